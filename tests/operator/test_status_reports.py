"""Bad input that admission cannot see is reported in the RedisCluster's status, with a clear
message, and the operator goes on serving: a named Secret that is missing or unusable, Pods that
cannot be scheduled, a config value the server itself refuses."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.testbed.kube import JSON, apply, eventually, get, is_ready, pods, redis_cli

pytestmark = pytest.mark.namespace_prefix("op")


def status(cp: ControlPlane, namespace: str, name: str) -> JSON:
    found: JSON = get(cp, namespace, "rediscluster", name).get("status") or {}
    return found


def condition(cp: ControlPlane, namespace: str, name: str, kind: str) -> JSON:
    for found in status(cp, namespace, name).get("conditions") or []:
        if found["type"] == kind:
            return dict(found)
    return {}


def cluster(name: str, extra: str = "", shards: int = 3, replicas: int = 0) -> str:
    return f"""\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {{name: {name}}}
spec:
  shards: {shards}
  replicasPerShard: {replicas}
  image: valkey/valkey:9.1
{extra}"""


def secret(name: str, data: dict[str, str]) -> str:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    lines = "".join(f"  {k}: {v}\n" for k, v in encoded.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ndata:\n{lines}"


def warnings(cp: ControlPlane, namespace: str, name: str, reason: str) -> list[JSON]:
    listed = get(cp, namespace, "events", f"--field-selector=involvedObject.name={name}")
    return [e for e in listed["items"] if e["reason"] == reason and e["type"] == "Warning"]


def test_a_missing_secret_is_reported_then_used_once_created(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, cluster("keyed", "  auth: {secretName: keyed-password}\n"))
    ready = eventually(
        lambda: (
            condition(cp, namespace, "keyed", "Ready").get("reason") == "SecretMissing"
            and condition(cp, namespace, "keyed", "Ready")
        ),
        "Ready=False with reason SecretMissing",
    )
    assert ready["status"] == "False"
    assert "no Secret 'keyed-password'" in ready["message"], ready
    assert status(cp, namespace, "keyed")["phase"] == "Pending"
    assert not pods(cp, namespace, "redkube.io/cluster=keyed"), "nothing is built without it"

    apply(cp, namespace, secret("keyed-password", {"password": "chosen by the user"}))
    eventually(
        lambda: status(cp, namespace, "keyed").get("phase") == "Ready",
        "the cluster is built once the Secret exists",
        180,
    )
    # The Pods' readiness probes (cluster_state:ok) follow within their period.
    listed = eventually(
        lambda: (
            (found := pods(cp, namespace, "redkube.io/cluster=keyed"))
            and len(found) == 3
            and all(is_ready(p) for p in found.values())
            and found
        ),
        "3 Pods Ready",
        30,
    )
    ip = next(iter(listed.values()))["status"]["podIP"]
    assert redis_cli(ip, "chosen by the user", "ping") == "PONG"
    # Reported once while it lasted, not once per pass.
    assert len(warnings(cp, namespace, "keyed", "SecretMissing")) == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"pass": "misnamed key"}, "has no 'password' key"),
        ({"password": "two\nlines"}, "'password' must be one non-blank line"),
        ({"password": "   "}, "'password' must be one non-blank line"),
    ],
    ids=["no-password-key", "multi-line", "blank"],
)
def test_an_unusable_secret_is_reported(
    control_plane: ControlPlane, operator: Path, namespace: str, data: dict[str, str], expected: str
) -> None:
    cp = control_plane
    apply(cp, namespace, secret("pw", data))
    apply(cp, namespace, cluster("badsecret", "  auth: {secretName: pw}\n"))
    ready = eventually(
        lambda: (
            condition(cp, namespace, "badsecret", "Ready").get("reason") == "SecretInvalid"
            and condition(cp, namespace, "badsecret", "Ready")
        ),
        "Ready=False with reason SecretInvalid",
    )
    assert expected in ready["message"], ready
    assert warnings(cp, namespace, "badsecret", "SecretInvalid")


def test_pods_that_cannot_be_scheduled_are_named_in_status(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    """Four Pods per shard with required anti-affinity, on three nodes: admission cannot know the
    node count, so the status says which Pod waits and why, in the scheduler's words."""
    cp = control_plane
    placement = "  placement: {antiAffinity: required}\n"
    apply(cp, namespace, cluster("crowded", placement, shards=3, replicas=3))

    def named() -> str:
        problems = " | ".join(status(cp, namespace, "crowded").get("problems", []))
        found = all(f"crowded-{shard}-3 Unschedulable" in problems for shard in range(3))
        return problems if found else ""

    problems = eventually(named, "status.problems names the three unschedulable Pods")
    assert "anti-affinity" in problems, problems
    current = status(cp, namespace, "crowded")
    assert current["phase"] != "Ready"
    # The message leads with one of them (a Pod problem comes first) and counts the rest.
    assert "Unschedulable" in current["message"] and "more problem" in current["message"], current


def test_a_config_value_the_server_refuses_is_reported(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    """A value only the server can judge (admission checks the formats of common keys, not of
    every key): the server exits, and the status shows the crash loop with its exit code."""
    cp = control_plane
    apply(cp, namespace, cluster("picky", "  config: {active-expire-effort: lots}\n"))
    message = eventually(
        lambda: (
            "CrashLoopBackOff" in (m := status(cp, namespace, "picky").get("message", "")) and m
        ),
        "the status names the crash loop",
        120,
    )
    assert "(last exit code 1)" in message, message
    # The server's own words, through FallbackToLogsOnError (the test bed's node agent fills the
    # terminated state's message from the log's end, as the kubelet does).
    assert "active-expire-effort" in message, message
    assert status(cp, namespace, "picky")["phase"] != "Ready"


def test_a_config_value_admission_can_judge_is_refused_before_any_pod(
    control_plane: ControlPlane, namespace: str
) -> None:
    """maxmemory's format is known: refused by the apiserver, with the key in the message."""
    done = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=cluster("early", "  config: {maxmemory: lots, hz: 10}\n"), check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "maxmemory" in done.stderr, done.stderr
