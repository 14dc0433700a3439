"""Owned objects changed behind the operator's back are restored: a StatefulSet scaled with
`kubectl scale` and a deleted headless Service come back as the spec says, and the cluster is
whole again; once restored, nothing is applied again and again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.checks import assert_keys, redis_cli_check_at, write_keys
from tests.operator.test_kubectl_workflow import cluster_client, password, running_pods
from tests.operator.test_replica_scaling import CLUSTER, ready_with
from tests.testbed.kube import apply, events, eventually, get

RESTORING = "restoring owned objects"


def restorations(cp: ControlPlane, namespace: str) -> list[str]:
    return [
        e.get("message", "")
        for e in events(cp, namespace, "shop")
        if e.get("message", "").startswith(RESTORING)
    ]


def statefulset_replicas(cp: ControlPlane, namespace: str, name: str) -> int:
    return int(get(cp, namespace, "statefulset", name)["spec"]["replicas"])


def service_uid(cp: ControlPlane, namespace: str) -> str | None:
    found = cp.kubectl("get", "service", "shop-nodes", "-n", namespace, "-o",
                       "jsonpath={.metadata.uid}", check=False)  # fmt: skip
    return found.stdout if found.returncode == 0 else None


@pytest.mark.namespace_prefix("op")
def test_scaled_statefulset_and_deleted_service_are_restored(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"replicas": 1})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    pw = password(cp, namespace)
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, 2000)
    old_service = service_uid(cp, namespace)
    assert old_service

    # One after the other: a Service deleted while the operator restores the StatefulSet is
    # recreated by that same pass, before its deletion is noticed (so no Event names it).
    cp.kubectl("scale", "statefulset", "shop-1", "-n", namespace, "--replicas=1")
    eventually(lambda: statefulset_replicas(cp, namespace, "shop-1") == 2, "shop-1 back to 2")
    cp.kubectl("delete", "service", "shop-nodes", "-n", namespace)
    eventually(lambda: service_uid(cp, namespace) not in (None, old_service), "Service recreated")
    eventually(lambda: ready_with(cp, namespace, 6), "Ready again with 6 Pods", 180)
    said = " ".join(restorations(cp, namespace))
    assert "StatefulSet shop-1 was changed by kubectl" in said, said
    assert "Service shop-nodes was deleted" in said, said

    listed = running_pods(cp, namespace)
    redis_cli_check_at(next(iter(listed.values()))["status"]["podIP"], pw)
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)

    # Restored for good: two more daemon passes (5 s each) apply nothing more.
    before = len(restorations(cp, namespace))
    time.sleep(11)
    assert len(restorations(cp, namespace)) == before

    # The NetworkPolicy is owned like the rest: deleted, it comes back; turned off in the spec,
    # the operator deletes it.
    def policy_uid() -> str | None:
        found = cp.kubectl("get", "networkpolicy", "shop-network", "-n", namespace, "-o",
                           "jsonpath={.metadata.uid}", check=False)  # fmt: skip
        return found.stdout if found.returncode == 0 else None

    old_policy = policy_uid()
    assert old_policy
    cp.kubectl("delete", "networkpolicy", "shop-network", "-n", namespace)
    eventually(lambda: policy_uid() not in (None, old_policy), "NetworkPolicy recreated")
    said = " ".join(restorations(cp, namespace))
    assert "NetworkPolicy shop-network was deleted" in said, said
    cp.kubectl("patch", "rdc", "shop", "-n", namespace, "--type=merge",
               "-p", '{"spec": {"networkPolicy": {"enabled": false}}}')  # fmt: skip
    eventually(lambda: policy_uid() is None, "NetworkPolicy deleted once turned off")
