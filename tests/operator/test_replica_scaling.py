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
from tests.testbed.kube import JSON, apply, eventually, redis_cli, rediscluster_messages

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

    # Make an ordinal that is about to go a master: shop-0-2 takes over shard 0, and the other
    # shards' roles move so that masters stay one per node (else the loop spreads them again).
    # While one shard's role moves, a node may briefly serve two masters and the loop spread
    # them again: so, until all of them are masters at once, fail over the ones that are not.
    chosen = masters_one_per_node(running_pods(cp, namespace))

    def chosen_are_masters() -> bool:
        for name in chosen:
            if roles(cp, namespace, pw).get(name) != "master":
                ip = running_pods(cp, namespace)[name]["status"]["podIP"]
                redis_cli(ip, pw, "cluster", "failover")  # refused if it became master meanwhile
                eventually(
                    lambda n=name: roles(cp, namespace, pw).get(n) == "master", f"{name} master"
                )
        return all(roles(cp, namespace, pw)[name] == "master" for name in chosen)

    eventually(chosen_are_masters, "the chosen Pods to be masters at once", 120)

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


def masters_one_per_node(listed: dict[str, JSON]) -> list[str]:
    """shop-0-2, and one Pod of shards 1 and 2, all on different nodes."""
    node = {name: pod["spec"]["nodeName"] for name, pod in listed.items()}
    for one in range(3):
        for two in range(3):
            chosen = ["shop-0-2", f"shop-1-{one}", f"shop-2-{two}"]
            if len({node[name] for name in chosen}) == 3:
                return chosen
    raise AssertionError(f"no choice of masters one per node: {node}")


def meets(cp: ControlPlane, namespace: str) -> int:
    """How many "introduce nodes" actions the operator took (its Events on the RedisCluster)."""
    return len(rediscluster_messages(cp, namespace, "introduce nodes"))
