"""Other shape changes of a local cluster: replicas per shard up and down, a scale-in that the
staying masters' maxmemory cannot hold (refused before anything moves), and `redkube status`
during a resharding."""

from __future__ import annotations

import pytest

from tests.checks import assert_fully_linked, assert_keys, redis_cli_check, write_keys
from tests.clusters import LocalCluster, Redkube, wait_for


@pytest.mark.timeout(300)
def test_replicas_up_and_down(redkube: Redkube, cluster_3x1: LocalCluster) -> None:
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        written = write_keys(client, 5000)
    redkube.ok("up", "--name", cluster.name, "--replicas", "2")
    assert len(cluster.members()) == 9
    assert_fully_linked(cluster)
    redis_cli_check(cluster)
    redkube.ok("up", "--name", cluster.name, "--replicas", "1")
    assert len(cluster.members()) == 6
    assert all(m["ordinal"] < 2 for m in cluster.members())
    assert_fully_linked(cluster)
    output = redis_cli_check(cluster)
    assert output.count("1 slaves.") == 3, output
    for member in cluster.members():
        with cluster.client(member["name"]) as node:
            assert len(str(node.execute_command("CLUSTER", "NODES")).splitlines()) == 6
    with cluster.cluster_client() as client:
        assert_keys(client, written)


@pytest.mark.timeout(300)
def test_a_scale_in_the_staying_masters_cannot_hold_is_refused_before_anything_moves(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        written = write_keys(client, 20_000)
    for member in cluster.members():
        with cluster.client(member["name"]) as node:
            used = int(node.info("memory")["used_memory"])
            node.config_set("maxmemory", str(used + 200_000))
    done = redkube.run("up", "--name", cluster.name, "--shards", "1", "--timeout", "8")
    assert done.returncode == 3, done.stdout + done.stderr  # timed out, the loop keeps waiting
    step = wait_for(
        lambda: s if "refusing to scale in" in (s := cluster.status()["step"]) else None,
        30,
        "the refusal in the status",
    )
    assert "maxmemory" in step, step
    assert not any(e.startswith("move ") for e in cluster.events()), cluster.events()
    # Changing one's mind back is enough.
    redkube.ok("up", "--name", cluster.name, "--shards", "3")
    assert len(cluster.members()) == 6
    redis_cli_check(cluster)
    with cluster.cluster_client() as client:
        assert_keys(client, written)
