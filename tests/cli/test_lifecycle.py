"""`up` is idempotent; `down` then `up` brings the same cluster and data back."""

from __future__ import annotations

from tests.checks import assert_fully_linked, assert_keys, redis_cli_check, write_keys
from tests.clusters import LocalCluster, Redkube, alive
from tests.healing.test_lost_data import myself_id


def ids(cluster: LocalCluster) -> dict[str, str]:
    return {m["name"]: myself_id(cluster, m["name"]) for m in cluster.members()}


def test_up_twice_changes_nothing(cluster_3x1: LocalCluster, redkube: Redkube) -> None:
    cluster = cluster_3x1
    before_ids = ids(cluster)
    before_events = cluster.events()
    supervisor = cluster.supervisor_pid()

    done = redkube.ok("up", "--name", "demo")

    assert "is ready" in done.stdout
    assert cluster.supervisor_pid() == supervisor
    assert ids(cluster) == before_ids
    assert cluster.events() == before_events, "the second up made the loop act"


def test_down_then_up_brings_the_same_data_back(
    cluster_3x1: LocalCluster, redkube: Redkube
) -> None:
    cluster = cluster_3x1
    with cluster.cluster_client() as client:
        written = write_keys(client, 5000)
    before_ids = ids(cluster)
    pids = [cluster.node_pid(m["name"]) for m in cluster.members()]

    done = redkube.ok("down", "--name", "demo")
    assert "stopped" in done.stdout
    assert cluster.supervisor_pid() is None
    for pid in pids:
        assert pid is not None and not alive(pid)
    assert "supervisor not running" in redkube.ok("status", "--name", "demo").stdout

    redkube.ok("up", "--name", "demo")

    assert ids(cluster) == before_ids
    assert not any("assign slots" in e or "epochs" in e for e in cluster.events())
    redis_cli_check(cluster)
    assert_fully_linked(cluster)
    with cluster.cluster_client() as client:
        assert_keys(client, written)


def test_down_purge_deletes_everything(cluster_3x1: LocalCluster, redkube: Redkube) -> None:
    redkube.ok("down", "--name", "demo", "--purge")
    assert not cluster_3x1.dir.exists()
    assert "no clusters" in redkube.ok("list").stdout


def test_kill_and_logs(cluster_3x1: LocalCluster, redkube: Redkube) -> None:
    cluster = cluster_3x1
    pid = cluster.node_pid("demo-2-1")
    redkube.ok("kill", "demo-2-1")
    assert pid is not None
    cluster.wait_ready()
    assert cluster.node_pid("demo-2-1") != pid
    log = redkube.ok("logs", "demo-2-1", "-n", "200").stdout
    assert "Ready to accept connections" in log
    supervisor_log = redkube.ok("logs", "--name", "demo").stdout
    assert "demo-2-1 was killed by SIGKILL" in supervisor_log
