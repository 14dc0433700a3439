"""SIGKILL a master under continuous writes: writes resume, acknowledged writes survive."""

from __future__ import annotations

import time

import redis

from tests.checks import assert_fully_linked, assert_keys, redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for
from tests.writers import Writer


def write_with_wait(client: redis.Redis, slots: tuple[int, int], count: int) -> dict[str, str]:
    """Write keys that hash to the master's slots, each acknowledged by a replica (WAIT 1)."""
    written: dict[str, str] = {}
    n = 0
    while len(written) < count:
        key = f"acked:{n}"
        n += 1
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        if not slots[0] <= slot <= slots[1]:
            continue
        client.set(key, key)
        assert int(client.execute_command("WAIT", 1, 2000)) == 1, "replica did not acknowledge"
        written[key] = key
    return written


def test_master_sigkill_under_writes(cluster_3x1: LocalCluster, redkube: Redkube) -> None:
    cluster = cluster_3x1
    victim = "demo-0-0"
    with cluster.client(victim) as direct:
        acknowledged = write_with_wait(direct, (0, 5460), 500)
    with cluster.cluster_client() as client:
        writer = Writer(client, "during")
        writer.start()
        wait_for(lambda: len(writer.log.acknowledged) > 200, 30, "writes before the kill")
        writer.mark = time.monotonic()
        redkube.ok("kill", victim)
        wait_for(lambda: len(writer.log.successes_after) > 500, 60, "writes to resume")
        log = writer.stop()

    # The old master came back as its replica; the two masters then sharing demo-0-1's host,
    # the role goes back to it by a graceful failover. (The writes resumed may all have gone to
    # other shards before the loop even saw the death: wait for the events, then for Ready.)
    wait_for(
        lambda: any("spreading masters" in e for e in cluster.events()) or None,
        60,
        "the masters to be spread again",
    )
    cluster.wait_ready()
    events = cluster.events()
    assert any("failover (force) to" in e for e in events), events  # the replica took over
    roles = cluster.roles()
    assert (roles[victim], roles["demo-0-1"]) == ("master", "slave"), roles
    redis_cli_check(cluster)
    assert_fully_linked(cluster)
    with cluster.cluster_client() as client:
        assert_keys(client, acknowledged)
        assert_keys(client, log.acknowledged)


def test_redis_own_election_when_the_platform_cannot_see(redkube: Redkube, server: str) -> None:
    """A hung master (SIGSTOP) is invisible to the platform: Redis elects; the loop confirms."""
    cluster = redkube.up_cluster("hung", 3, 1, server, "--node-timeout", "1000")
    victim = "hung-1-0"
    pid = cluster.node_pid(victim)
    assert pid is not None
    import os
    import signal

    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: _role(cluster, "hung-1-1") == "master", 30, "Redis' own election")
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.wait_ready()
    roles = cluster.roles()
    assert {roles[victim], roles["hung-1-1"]} == {"master", "slave"}, roles
    # No failover of the loop's own for the hung master (only, maybe, spreading masters again).
    forced = [e for e in cluster.events() if e.startswith("failover") and "spreading" not in e]
    assert not forced, cluster.events()
    redis_cli_check(cluster)
    assert_fully_linked(cluster)


def _role(cluster: LocalCluster, name: str) -> str:
    with cluster.client(name) as client:
        return str(client.execute_command("ROLE")[0])
