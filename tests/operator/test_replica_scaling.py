"""Replicas per shard scale out and in with `kubectl apply`: new replicas link to their shard's
master on other nodes; on the way in, the operator moves the role of a master sitting on a
removed ordinal to a replica that stays before it shrinks the StatefulSet, the loop forgets the
removed nodes, and every key stays; scaled out again at once, the returning nodes are met once
their FORGET ban ends, without a storm of MEETs."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.checks import assert_keys, redis_cli_check_at, write_keys
from tests.operator.test_kubectl_workflow import (
    cluster_client,
    password,
    roles,
    running_pods,
    shards_in_status,
    shards_seen_by_redis,
    status,
)
from tests.testbed.kube import apply, eventually, redis_cli, rediscluster_messages

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: shop}
spec:
  shards: 3
  replicasPerShard: %(replicas)d
  image: valkey/valkey:9.1
  storage: {size: 1Gi}
"""
KEYS = 3000


def ready_with(cp: ControlPlane, namespace: str, pods: int) -> bool:
    found = status(cp, namespace)
    return (
        found.get("phase") == "Ready"
        and found.get("readyNodes") == f"{pods}/{pods}"
        and len(running_pods(cp, namespace)) == pods
    )


@pytest.mark.timeout(600)  # includes waiting out a 60 s FORGET ban
@pytest.mark.namespace_prefix("op")
def test_replicas_scale_out_and_in_keeping_every_key(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"replicas": 1})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    pw = password(cp, namespace)
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, KEYS)

    apply(cp, namespace, CLUSTER % {"replicas": 2})
    eventually(lambda: ready_with(cp, namespace, 9), "Ready with 9 Pods", 180)
    redis_cli_check_at(next(iter(running_pods(cp, namespace).values()))["status"]["podIP"], pw)
    eventually(
        lambda: shards_in_status(cp, namespace) == shards_seen_by_redis(cp, namespace, pw),
        "status.shards names two replicas per master",
        30,
    )
    assert all(len(replicas.split(",")) == 2 for _, replicas, _ in shards_in_status(cp, namespace))

    # Make an ordinal that is about to go a master: shop-0-2 takes over shard 0, and the shard
    # whose master shares shop-0-2's node moves to the node shard 0 leaves, so masters stay one
    # per node. Either failover alone crowds a node, and the loop would spread the masters again
    # (perhaps by undoing it): so both are asked at once, again until both hold.
    nodes = {name: pod["spec"]["nodeName"] for name, pod in running_pods(cp, namespace).items()}
    target = swapped_masters(nodes, roles(cp, namespace, pw))

    def target_are_masters() -> bool:
        now = roles(cp, namespace, pw)
        if all(now.get(name) == "master" for name in target):
            return True
        for name in target:
            if now.get(name) != "master":
                ip = running_pods(cp, namespace)[name]["status"]["podIP"]
                redis_cli(ip, pw, "cluster", "failover")
        return False

    eventually(target_are_masters, f"{', '.join(target)} masters at once", 120, interval=3)

    apply(cp, namespace, CLUSTER % {"replicas": 1})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready again with 6 Pods", 180)
    listed = running_pods(cp, namespace)
    assert sorted(listed) == [f"shop-{s}-{o}" for s in range(3) for o in range(2)]
    some_ip = next(iter(listed.values()))["status"]["podIP"]
    redis_cli_check_at(some_ip, pw)
    known = redis_cli(some_ip, pw, "cluster", "nodes").splitlines()
    assert len(known) == 6, known  # the removed nodes are forgotten
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)
    # The operator moved the master role before it shrank the StatefulSet (the preStop hook is
    # only the fallback).
    events = "\n".join(rediscluster_messages(cp, namespace))
    assert "shop-0-2 is master and goes with the scale-in; handing its role over" in events

    # Out again at once, the removed Pods' volumes kept: their node IDs return while the servers
    # still ban them (FORGET). The loop waits out the ban, then meets them: no MEET storm.
    introductions = meets(cp, namespace)
    apply(cp, namespace, CLUSTER % {"replicas": 2})
    eventually(lambda: ready_with(cp, namespace, 9), "Ready with 9 Pods again", 240)
    redis_cli_check_at(some_ip, pw)
    added = meets(cp, namespace) - introductions
    assert added <= 6, f"{added} 'introduce nodes' actions for 3 returning replicas"
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)


def swapped_masters(nodes: dict[str, str], roles: dict[str, str]) -> list[str]:
    """The masters to make: shop-0-2 for shard 0, and for the shard whose master is on shop-0-2's
    node, its member on the node shard 0's master is on (every shard has a member on every node
    with 3 members per shard on 3 nodes); the other masters stay."""
    masters = {name.rsplit("-", 1)[0]: name for name, role in roles.items() if role == "master"}
    if masters["shop-0"] == "shop-0-2":
        return list(masters.values())
    freed = nodes[masters["shop-0"]]
    masters["shop-0"] = "shop-0-2"
    for shard, master in masters.items():
        if shard != "shop-0" and nodes[master] == nodes["shop-0-2"]:
            masters[shard] = next(
                name for name, node in nodes.items()
                if node == freed and name.rsplit("-", 1)[0] == shard
            )  # fmt: skip
    chosen = list(masters.values())
    assert len({nodes[name] for name in chosen}) == len(chosen), (chosen, nodes)
    return chosen


def meets(cp: ControlPlane, namespace: str) -> int:
    """How many "introduce nodes" actions the operator took (its Events on the RedisCluster)."""
    return len(rediscluster_messages(cp, namespace, "introduce nodes"))
