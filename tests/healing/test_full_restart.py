"""Every node restarts at once with a new address (every Pod recreated with a new IP), under
writes, ten times in a row: each time the cluster must come back Ready, clean, linked, at the new
addresses, with every write a replica acknowledged."""

from __future__ import annotations

import statistics
import time

import pytest
from redis.cluster import ClusterNode, RedisCluster

from tests.acked_writers import AckedWriter
from tests.checks import assert_fully_linked, assert_keys, redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for

ROUNDS = 10
READY_TIMEOUT_S = 120.0


def connect(cluster: LocalCluster) -> RedisCluster:
    """A cluster client from the addresses the record holds now (they change on every start)."""
    return RedisCluster(
        startup_nodes=[ClusterNode(m["ip"], 6379) for m in cluster.members()],
        password=cluster.password,
        decode_responses=True,
        socket_timeout=2,
        socket_connect_timeout=1,
    )


def addresses(cluster: LocalCluster) -> dict[str, str]:
    return {m["name"]: m["ip"] for m in cluster.members()}


def announced(cluster: LocalCluster) -> dict[str, set[str]]:
    """For each member, the addresses its CLUSTER NODES lists (itself included)."""
    seen: dict[str, set[str]] = {}
    for member in cluster.members():
        with cluster.client(member["name"]) as client:
            text = str(client.execute_command("CLUSTER", "NODES"))
        seen[member["name"]] = {line.split()[1].split("@")[0] for line in text.splitlines()}
    return seen


def wait_ready_again(
    cluster: LocalCluster, redkube: Redkube, before: dict[str, str], round_number: int
) -> None:
    """Ready, after the loop noticed the kill and every node started at a new address; else
    fail with what the loop waits for and the supervisor's last log lines."""
    try:
        cluster.wait_unready(timeout=30)
        wait_for(
            lambda: (
                cluster.status()["phase"] == "Ready"
                and all(ip != before[name] for name, ip in addresses(cluster).items())
            ),
            READY_TIMEOUT_S,
            "Ready at new addresses after a full restart",
            every=0.02,
        )
    except AssertionError as error:
        status = cluster.status()
        log = redkube.run("logs", "--name", cluster.name, "-n", "40").stdout
        raise AssertionError(
            f"round {round_number}: {error}\nphase {status['phase']}, step: {status['step']}\n"
            f"problems: {status['problems'][-8:]}\nsupervisor log:\n{log}"
        ) from None


def wait_for_writes(writer: AckedWriter, count: int) -> None:
    wait_for(lambda: len(writer.log.acknowledged) > count, 30, f"{count} acknowledged writes")


@pytest.mark.timeout(600)  # ten full restarts, about 1-2 min
def test_every_node_restarts_at_once_with_new_addresses(redkube: Redkube, server: str) -> None:
    cluster = redkube.up_cluster("demo", 3, 1, server, "--new-address-on-restart")
    assert cluster.record["new_address_on_restart"] is True
    writer = AckedWriter(lambda: connect(cluster), "acked", max_seconds=600)
    writer.start()
    took: list[float] = []
    try:
        wait_for_writes(writer, 200)
        for round_number in range(1, ROUNDS + 1):
            before = addresses(cluster)
            killed_at = time.monotonic()
            redkube.ok("kill", "--all", "--name", cluster.name)
            wait_ready_again(cluster, redkube, before, round_number)
            took.append(time.monotonic() - killed_at)
            print(f"round {round_number}: Ready {took[-1]:.2f}s after the kill")

            now = addresses(cluster)
            assert all(now[name] != before[name] for name in now), (before, now)
            expected = {f"{ip}:6379" for ip in now.values()}
            for name, seen in announced(cluster).items():
                assert seen == expected, (name, seen, expected)
            redis_cli_check(cluster)
            assert_fully_linked(cluster)
            acknowledged = writer.log.snapshot()
            with connect(cluster) as client:
                assert_keys(client, acknowledged)
            wait_for_writes(writer, len(acknowledged) + 200)
    finally:
        log = writer.stop()
        print(
            f"{len(took)} rounds to Ready: median {statistics.median(took or [0]):.2f}s, "
            f"max {max(took or [0]):.2f}s ({', '.join(f'{t:.2f}' for t in took)})"
        )
        print(
            f"writes: {len(log.acknowledged)} acknowledged, {log.failed_commands} failed "
            f"commands, {log.unacknowledged} not acknowledged by a replica, "
            f"{log.failed_connects} failed connects"
        )
    with connect(cluster) as client:
        assert_keys(client, log.acknowledged)
