"""Masters stay spread over the nodes: a failover that puts two masters on one node is undone by
the operator, one graceful failover at a time, so losing one node never takes two masters."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.checks import assert_keys, redis_cli_check_at, write_keys
from tests.operator.test_kubectl_workflow import (
    CLUSTER,
    cluster_client,
    password,
    roles,
    running_pods,
    status,
)
from tests.testbed.kube import apply, eventually, redis_cli, rediscluster_messages


def master_nodes(cp: ControlPlane, namespace: str, pw: str) -> list[str]:
    listed = running_pods(cp, namespace)
    return sorted(
        listed[name]["spec"]["nodeName"]
        for name, role in roles(cp, namespace, pw).items()
        if role == "master"
    )


@pytest.mark.namespace_prefix("op")
def test_masters_move_back_to_three_nodes_after_a_failover_crowds_one(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"image": "valkey/valkey:9.1"})

    def ready() -> bool:
        return (
            status(cp, namespace).get("phase") == "Ready" and len(running_pods(cp, namespace)) == 6
        )

    eventually(ready, "Ready with 6 Pods", 180)
    pw = password(cp, namespace)
    # However the scheduler placed the Pods, the masters end up on three nodes.
    eventually(lambda: len(set(master_nodes(cp, namespace, pw))) == 3, "masters on 3 nodes", 60)
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, 2000)

    # Promote a replica that sits on a node already serving another shard's master.
    listed = running_pods(cp, namespace)
    current = roles(cp, namespace, pw)
    node_of = {name: pod["spec"]["nodeName"] for name, pod in listed.items()}
    crowding = next(
        name
        for name, role in current.items()
        if role == "slave"
        and any(current[other] == "master" and node_of[other] == node_of[name] for other in current)
    )
    assert redis_cli(listed[crowding]["status"]["podIP"], pw, "cluster", "failover") == "OK"
    eventually(lambda: len(set(master_nodes(cp, namespace, pw))) == 3, "masters spread again", 120)
    eventually(ready, "Ready again", 120)

    events = "\n".join(rediscluster_messages(cp, namespace))
    assert "spreading masters" in events, events
    some_ip = next(iter(running_pods(cp, namespace).values()))["status"]["podIP"]
    redis_cli_check_at(some_ip, pw)
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)
