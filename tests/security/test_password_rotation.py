"""`redkube up --rotate-password` under load: clients that switch to the new password within the
grace period see no failed command, replicas keep (and regain) their link with the new
masterauth, and the old password is refused afterwards."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.acked_writers import AckedWriter
from tests.checks import assert_fully_linked, assert_keys, redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for
from tests.datasets import Traffic

GRACE_S = 30


def client_with(cluster: LocalCluster, password: str) -> RedisCluster:
    nodes = [ClusterNode(m["ip"], 6379) for m in cluster.members()]
    return RedisCluster(startup_nodes=nodes, password=password, decode_responses=True,
                        socket_timeout=2, socket_connect_timeout=1)  # fmt: skip


@pytest.mark.timeout(300)
def test_a_rotated_password_fails_no_client_that_switches_in_time(
    redkube: Redkube, server: str
) -> None:
    cluster = redkube.up_cluster("rot", 3, 1, server)
    old = cluster.password
    # A client on the old password, and a writer that reads the password file on each connect.
    before = Traffic(client_with(cluster, old), "before")
    acked = AckedWriter(cluster.cluster_client, "acked", max_seconds=200)
    before.start()
    acked.start()
    try:
        wait_for(lambda: before.log.writes > 200, 30, "traffic on the old password")
        done = redkube.ok("up", "--name", "rot", "--rotate-password",
                          "--password-grace", str(GRACE_S))  # fmt: skip
        new = cluster.password
        shown = " ".join(redkube.ok("status", "rot").stdout.split())
        assert "password rotation: the old password works until" in shown, shown
        assert new != old and old not in done.stdout + done.stderr
        assert "the old one works until" in " ".join(done.stdout.split()), done.stdout
        # Both work now; the old one only until the grace period ends.
        after = Traffic(client_with(cluster, new), "after")
        after.start()
        try:
            wait_for(lambda: after.log.writes > 200, 30, "traffic on the new password")
            # A replica restarted during the grace period comes back with the new masterauth.
            redkube.ok("kill", "rot-1-1")
            wait_for(lambda: cluster.status()["phase"] == "Ready" or None, 60, "Ready again")
            assert (cluster.dir / "password.old").exists()  # still within the grace period
            count = before.log.writes
            wait_for(lambda: before.log.writes > count + 100, 30, "old-password traffic")
            logged = before.stop()  # the old-password client switches, within the grace period
            wait_for(
                lambda: any("old password removed" in e for e in cluster.events()) or None,
                GRACE_S + 60,
                "the old password to be removed",
            )
        finally:
            newer = after.stop()
    finally:
        written = acked.stop()
        if before._thread.is_alive():
            before.stop()
    assert not logged.failed, logged.failed[:5]
    assert not newer.failed, newer.failed[:5]
    assert written.failed_commands == 0, written
    ip = cluster.members()[0]["ip"]
    with (
        redis.Redis(host=ip, port=6379, password=old) as stale,
        pytest.raises(redis.AuthenticationError),
    ):
        stale.ping()
    with redis.Redis(host=ip, port=6379, password=new) as fresh:
        assert fresh.ping()
    redis_cli_check(cluster)
    assert_fully_linked(cluster)
    with cluster.cluster_client() as client:
        assert_keys(client, written.acknowledged)
    assert not (cluster.dir / "password.old").exists()
