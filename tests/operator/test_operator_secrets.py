"""On the test bed's real nodes, a RedisCluster's password stays in its Secret: it is not in the
operator's log, an Event, the RedisCluster (spec and status), the objects the operator made
(StatefulSets, ConfigMaps, Services, PodDisruptionBudgets, NetworkPolicies), the servers' logs,
`kubectl describe`, `redkube status`, nor in any process's arguments on the machine (`ps`: the
Pods' processes run on this machine's kernel), through a failover and a live setting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.operator.conftest import redkube_status
from tests.operator.test_kubectl_workflow import CLUSTER, password, running_pods, status
from tests.testbed.kube import apply, eventually, rediscluster_messages

pytestmark = pytest.mark.namespace_prefix("op")

OWNED_KINDS = "statefulsets,configmaps,services,poddisruptionbudgets,networkpolicies"


@pytest.mark.timeout(420)
def test_the_password_is_only_in_its_secret(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"image": "valkey/valkey:9.1"})
    eventually(lambda: status(cp, namespace).get("phase") == "Ready", "Ready", 180)
    pw = password(cp, namespace)
    assert len(pw) >= 24

    # A failover (Events, status changes) and a live setting (CONFIG SET on every Pod).
    pods = running_pods(cp, namespace)
    master = next(name for name in pods if name.endswith("-0"))
    old_uid = pods[master]["metadata"]["uid"]
    cp.kubectl("delete", "pod", master, "-n", namespace, "--wait=false")

    def healed() -> bool:
        now = running_pods(cp, namespace)
        return (
            len(now) == 6
            and now.get(master, {}).get("metadata", {}).get("uid") not in (None, old_uid)
            and status(cp, namespace).get("phase") == "Ready"
        )

    eventually(healed, "Ready again with a new Pod in place of the deleted one", 180)
    patch = '{"spec": {"config": {"maxmemory-policy": "allkeys-lru"}}}'
    cp.kubectl("patch", "rediscluster", "shop", "-n", namespace, "--type=merge", "-p", patch)
    eventually(
        lambda: (
            status(cp, namespace).get("phase") == "Ready"
            and status(cp, namespace).get("observedGeneration", 0) >= 2
        ),
        "the live setting applied",
        120,
    )

    said: dict[str, str] = {"operator log": operator.read_text(errors="replace")}
    said["events"] = cp.kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout
    assert rediscluster_messages(cp, namespace), "the operator posted Events"
    said["rediscluster"] = cp.kubectl("get", "rdc", "shop", "-n", namespace, "-o", "yaml").stdout
    said["owned objects"] = cp.kubectl("get", OWNED_KINDS, "-n", namespace, "-o", "yaml").stdout
    said["describe pods"] = cp.kubectl("describe", "pods", "-n", namespace).stdout
    for pod in running_pods(cp, namespace):
        said[f"logs {pod}"] = cp.kubectl("logs", pod, "-n", namespace).stdout
    said["redkube status"] = redkube_status(cp.kubeconfig, "shop", "-n", namespace)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "valkey-server" in ps or "redis-server" in ps  # the Pods' servers are listed
    said["ps"] = ps
    for where, text in said.items():
        assert text.strip(), f"{where}: nothing read"
        assert pw not in text, f"the password is in the {where}"
    assert "Ready" in said["redkube status"]
