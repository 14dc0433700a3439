"""Pod basics: a crash loop quoted in the server's own words, a Pod being deleted seen as
terminating, and RedisClusters that carry no finalizer (so deleting one never waits for an
operator), with a membership readiness probe and a budget that keeps a lone master from drains.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import kopf
import pytest

from redkube.model.members import MemberState
from redkube.model.specs import ClusterSpec
from redkube.operator.handlers import configure
from redkube.platform.kubernetes.api import JSON, KubernetesApi
from redkube.platform.kubernetes.pods import KubernetesPlatform, last_words, pod_problem
from testbed import ControlPlane
from tests.operator.conftest import CRD, start_operator, stop_operator
from tests.testbed.kube import apply, eventually, get, is_ready, pods

FATAL_CONFIG = """\
1:C 29 Nov 2026 19:27:58.959 # oO0OoO0OoO0Oo Valkey is starting oO0OoO0OoO0Oo

*** FATAL CONFIG FILE ERROR (Valkey 9.1.2) ***
Reading the configuration file, at line 14
>>> 'active-expire-effort "lots"'
argument couldn't be parsed into an integer
"""


def crashing(message: str | None) -> JSON:
    terminated: JSON = {"exitCode": 1, "reason": "Error"}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"name": "shop-0-1"},
        "spec": {},
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                    "lastState": {"terminated": terminated},
                }
            ]
        },
    }


# -- pure ----------------------------------------------------------------------------------------


def test_a_crash_loop_is_reported_with_the_servers_last_words() -> None:
    assert pod_problem(crashing(FATAL_CONFIG)) == (
        "shop-0-1 CrashLoopBackOff (last exit code 1): back-off 10s; the server said:"
        " >>> 'active-expire-effort \"lots\"' / argument couldn't be parsed into an integer"
    )


def test_last_words_are_one_or_two_lines_without_log_prefixes_and_bounded() -> None:
    assert last_words("1:M 29 Nov 2026 19:27:58.959 # Bad directive or wrong number of arguments\n")
    assert last_words("\n\n") == ""
    assert last_words("a\nb\nc\n") == "b / c"
    assert last_words(
        "12:M 29 Nov 2026 19:27:58.959 # Can't open the log file: Read-only file system\n"
    ) == ("Can't open the log file: Read-only file system")
    long = last_words("x" * 10_000 + "\n" + "y" * 10_000)
    assert len(long) <= 300 and long.endswith("y")


def test_a_crash_loop_without_a_message_reads_as_before() -> None:
    assert (
        pod_problem(crashing(None)) == "shop-0-1 CrashLoopBackOff (last exit code 1): back-off 10s"
    )
    assert pod_problem(crashing("")) == "shop-0-1 CrashLoopBackOff (last exit code 1): back-off 10s"


def running_pod(name: str, deleting: bool) -> JSON:
    meta: JSON = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": "node-1"},
        "status": {
            "podIP": "10.1.0.5",
            "containerStatuses": [{"name": "server", "state": {"running": {}}}],
        },
    }


def test_a_pod_being_deleted_is_a_terminating_member_that_still_runs() -> None:
    api = KubernetesApi.__new__(KubernetesApi)  # never called: the Pods are given
    platform = KubernetesPlatform(api, "shop", ClusterSpec("shop", shards=1, replicas=1))
    platform._pods = {
        "shop-0-0": running_pod("shop-0-0", deleting=True),
        "shop-0-1": running_pod("shop-0-1", deleting=False),
    }
    first, second = platform.members()
    assert (first.name, first.state, first.terminating) == ("shop-0-0", MemberState.RUNNING, True)
    assert (second.state, second.terminating) == (MemberState.RUNNING, False)


def test_no_handler_makes_kopf_put_a_finalizer_on_redisclusters() -> None:
    settings = kopf.OperatorSettings()
    asyncio.run(configure(settings=settings))
    spawning = kopf.get_default_registry()._spawning.get_all_handlers()
    assert spawning, "the daemon is registered"
    assert not [h for h in spawning if h.requires_finalizer]
    changing = kopf.get_default_registry()._changing.get_all_handlers()
    assert not [h for h in changing if h.requires_finalizer]
    assert settings.persistence.finalizer == "redkube.io/daemon"  # removed where it is left


# -- on the test bed -----------------------------------------------------------------------------

LONE = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata:
  name: lone
  finalizers: [redkube.io/daemon]  # as an older redkube left it
spec:
  shards: 1
  replicasPerShard: 0
  image: valkey/valkey:9.1
  config: {hz: 10}
"""


@pytest.mark.namespace_prefix("fin")
def test_a_cluster_is_deleted_without_an_operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The operator removes the finalizer an older version left, adds none, and builds a lone
    master whose Pod is Ready once it serves every slot and whose budget refuses drains; then,
    with no operator running, `kubectl delete` returns and the owned objects go."""
    cp = control_plane
    cp.kubectl("apply", "-f", str(CRD))
    operator = start_operator(cp, tmp_path / "operator.log", namespace, lease=namespace)
    try:
        apply(cp, namespace, LONE)

        def ready() -> JSON:
            found: JSON = get(cp, namespace, "rediscluster", "lone")
            return found if (found.get("status") or {}).get("phase") == "Ready" else {}

        found = eventually(ready, "the lone master is Ready", 180)
        eventually(
            lambda: not get(cp, namespace, "rediscluster", "lone")["metadata"].get("finalizers"),
            "the old finalizer is removed",
        )
        pod = eventually(
            lambda: next((p for p in pods(cp, namespace).values() if is_ready(p)), None),
            "the Pod is Ready (cluster_state:ok)",
        )
        assert pod["spec"]["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
        budget = get(cp, namespace, "poddisruptionbudget", "lone-0")
        assert budget["spec"]["maxUnavailable"] == 0
        assert found["spec"]["allowDisruptionWithoutReplicas"] is False
    finally:
        stop_operator(operator)
    assert not get(cp, namespace, "rediscluster", "lone")["metadata"].get("finalizers")
    cp.kubectl("delete", "rediscluster", "-n", namespace, "lone", "--timeout=60s", timeout=90)
    eventually(
        lambda: not get(cp, namespace, "statefulsets,services,configmaps", "-l",
                        "redkube.io/cluster=lone")["items"],
        "the garbage collector removes the owned objects",
        120,
    )  # fmt: skip
