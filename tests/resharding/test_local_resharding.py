"""Resharding a running local cluster with `redkube up --shards N`, on real servers, under load.

Checked with tools redkube did not write: redis-py's RedisCluster (reads, writes, DUMP of every
key), `redis-cli --cluster check`, and each node's own CLUSTER NODES.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.acked_writers import AckedWriter
from tests.checks import redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for
from tests.datasets import Traffic, assert_same_data, dumps, fill_every_type


def assert_shape(cluster: LocalCluster, shards: int, replicas: int) -> None:
    """The record, every node's view and redis-cli agree: `shards` masters with slots, each with
    `replicas` linked replicas, no open slot, and no node knows a removed one."""
    members = cluster.members()
    assert len(members) == shards * (1 + replicas)
    output = redis_cli_check(cluster)
    assert output.count("slots |") == shards, output
    for member in members:
        with cluster.client(member["name"]) as client:
            lines = str(client.execute_command("CLUSTER", "NODES")).splitlines()
        assert len(lines) == len(members), (member["name"], lines)
        assert not any("[" in line for line in lines), f"open slot on {member['name']}: {lines}"
    status = cluster.status()
    assert status["phase"] == "Ready" and status["migration"] is None, status


class Background:
    """`redkube up --shards N` running in the background, its output kept in a file so that a
    failure shows what the command said."""

    def __init__(self, redkube: Redkube, cluster: LocalCluster, shards: int) -> None:
        self.log = cluster.dir.parent / f"up-{shards}-shards.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "redkube", "up", "--name", cluster.name,
                 "--shards", str(shards), "--timeout", "300"],
                env=redkube.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def assert_succeeded(self, timeout: float) -> None:
        code = self.wait(timeout)
        assert code == 0, f"exit {code}:\n{self.log.read_text()[-3000:]}"


def reshape_in_background(redkube: Redkube, cluster: LocalCluster, shards: int) -> Background:
    return Background(redkube, cluster, shards)


def wait_for_a_move(cluster: LocalCluster) -> None:
    """Until the loop has started a batch of slot moves (its Event comes before the batch)."""
    wait_for(
        lambda: any(e.startswith("move ") for e in cluster.events()) or None,
        120,
        "a batch of slots to move",
        every=0.005,
    )


def reshape(redkube: Redkube, cluster: LocalCluster, shards: int) -> None:
    redkube.ok("up", "--name", cluster.name, "--shards", str(shards))


@pytest.mark.timeout(600)
def test_three_to_five_and_back_under_load_loses_nothing(
    redkube: Redkube, cluster_3x1: LocalCluster, server: str
) -> None:
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        keys = fill_every_type(client, 200_000)
        before = dumps(client, keys)
    traffic = Traffic(cluster.cluster_client(), "traffic")
    acked = AckedWriter(cluster.cluster_client, "acked")
    traffic.start()
    acked.start()
    try:
        reshape(redkube, cluster, 5)
        assert_shape(cluster, 5, 1)
        reshape(redkube, cluster, 3)
        assert_shape(cluster, 3, 1)
    finally:
        log = traffic.stop()
        acked_log = acked.stop()
    assert log.writes > 100 and not log.failed, log.failed[:5]
    if "valkey" in server:
        assert log.ask_to_unknown_node == 0  # atomic migration: no ASK at all
    print(f"traffic: {log.writes} writes, {log.ask_to_unknown_node} ASK to an unknown node")
    assert acked_log.failed_commands == 0, acked_log
    with cluster.cluster_client() as client:
        assert_same_data(before, dumps(client, keys))
        still = dumps(client, list(acked_log.acknowledged))
        lost = [k for k, (dump, _) in still.items() if dump is None]
        assert not lost, f"{len(lost)} acknowledged writes lost"
        values = client.mget_nonatomic(list(log.written)[:1000]) if log.written else []
        assert values == list(log.written.values())[:1000]
    said = " ".join(cluster.events())
    assert "retire demo-4-0, demo-4-1" in said or "retired demo-4" in said, said


@pytest.mark.timeout(400)
def test_one_to_four_and_back(redkube: Redkube, server: str) -> None:
    cluster = redkube.up_cluster("one", shards=1, replicas=1, server=server)
    with cluster.cluster_client() as client:
        keys = fill_every_type(client, 20_000)
        before = dumps(client, keys)
    reshape(redkube, cluster, 4)
    assert_shape(cluster, 4, 1)
    reshape(redkube, cluster, 1)
    assert_shape(cluster, 1, 1)
    with cluster.cluster_client() as client:
        assert_same_data(before, dumps(client, keys))


@pytest.mark.timeout(400)
def test_a_supervisor_killed_mid_move_resumes_and_a_change_of_mind_converges(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    """SIGKILL the supervisor as soon as slots are moving (3 -> 5); start it again asking for 3
    shards: it finishes or rolls back what was open and drains the new shards."""
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        keys = fill_every_type(client, 100_000)
        before = dumps(client, keys)
    up = reshape_in_background(redkube, cluster, 5)
    try:
        wait_for_a_move(cluster)
        supervisor = cluster.supervisor_pid()
        assert supervisor is not None
        os.kill(supervisor, signal.SIGKILL)
    finally:
        up.wait(timeout=120)
    reshape(redkube, cluster, 3)
    assert_shape(cluster, 3, 1)
    with cluster.cluster_client() as client:
        assert_same_data(before, dumps(client, keys))


def test_shards_out_of_bounds_are_refused_in_one_line(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    done = redkube.run("up", "--name", cluster_3x1.name, "--shards", "0")
    assert done.returncode != 0
    assert "shards must be at least 1" in done.stderr and "Traceback" not in done.stderr
    assert len(cluster_3x1.members()) == 6
