"""A node that loses its data comes back with a new ID: old ID forgotten, new node a replica."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from tests.checks import assert_fully_linked, assert_keys, redis_cli_check, write_keys
from tests.clusters import LocalCluster, Redkube


def cluster_node_ids(cluster: LocalCluster) -> dict[str, set[str]]:
    """For each member, the set of node IDs it knows (CLUSTER NODES)."""
    known: dict[str, set[str]] = {}
    for member in cluster.members():
        with cluster.client(member["name"]) as client:
            text = str(client.execute_command("CLUSTER", "NODES"))
        known[member["name"]] = {line.split()[0] for line in text.splitlines()}
    return known


def myself_id(cluster: LocalCluster, name: str) -> str:
    with cluster.client(name) as client:
        return str(client.execute_command("CLUSTER", "MYID"))


@pytest.mark.parametrize("victim", ["demo-1-0", "demo-1-1"], ids=["master", "replica"])
def test_wiped_node_rejoins_as_replica(
    cluster_3x1: LocalCluster, redkube: Redkube, victim: str
) -> None:
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        written = write_keys(client, 3000)
    old_id = myself_id(cluster, victim)
    pid = cluster.node_pid(victim)
    assert pid is not None
    # Freeze it first: Redis 7 exits by itself when nodes.conf vanishes, racing our kill.
    os.kill(pid, signal.SIGSTOP)
    shutil.rmtree(cluster.dir / "nodes" / victim / "data")
    redkube.ok("kill", victim)

    cluster.wait_unready()
    cluster.wait_ready()

    new_id = myself_id(cluster, victim)
    assert new_id != old_id
    for name, ids in cluster_node_ids(cluster).items():
        assert old_id not in ids, f"{name} still knows the stale ID"
        assert len(ids) == 6, (name, ids)
    roles = cluster.roles()  # a wiped master may have its role back (masters spread)
    assert {roles["demo-1-0"], roles["demo-1-1"]} == {"master", "slave"}, roles
    redis_cli_check(cluster)
    assert_fully_linked(cluster)
    with cluster.cluster_client() as client:
        assert_keys(client, written)


def test_wiped_master_dying_with_its_replica_keeps_the_replicas_data(
    cluster_3x1: LocalCluster, redkube: Redkube
) -> None:
    """Both nodes of shard 2 die; the master also lost its volume. The replica's copy must win:
    it is promoted, and the empty node that comes back at the master's address follows it."""
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        written = write_keys(client, 3000)
    master, replica = "demo-2-0", "demo-2-1"
    pids = [cluster.node_pid(master), cluster.node_pid(replica)]
    assert None not in pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
    shutil.rmtree(cluster.dir / "nodes" / master / "data")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]

    cluster.wait_unready()
    cluster.wait_ready()

    roles = cluster.roles()  # the empty node may get the role back later (masters spread)
    assert {roles[replica], roles[master]} == {"master", "slave"}, roles
    events = cluster.events()
    assert any(e.startswith("failover (force) to") or "(takeover)" in e for e in events), events
    redis_cli_check(cluster)
    assert_fully_linked(cluster)
    with cluster.cluster_client() as client:
        assert_keys(client, written)
