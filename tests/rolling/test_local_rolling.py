"""Spec changes reaching a running local cluster (`redkube up --config / --server`), on real
servers, under load: live settings by CONFIG SET with no restart; everything else by rolling
restarts, replicas first, each master after a graceful failover; version changes the data cannot
survive refused before any node restarts.

Checked with tools redkube did not write: each node's own CONFIG GET, INFO server and ROLE,
`redis-cli --cluster check`, redis-py's RedisCluster (every key read back), and a writer counting
acknowledged writes (SET then WAIT 1) and failed commands.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.checks import redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for
from tests.conftest import server_path
from tests.loads import Load

KEYS = 20_000


def config_everywhere(cluster: LocalCluster, key: str) -> set[str]:
    values = set()
    for member in cluster.members():
        with cluster.client(member["name"]) as client:
            values.add(str(client.config_get(key)[key]))
    return values


def versions(cluster: LocalCluster) -> set[str]:
    found = set()
    for member in cluster.members():
        with cluster.client(member["name"]) as client:
            info = client.info("server")
        found.add(str(info.get("valkey_version") or info["redis_version"]))
    return found


def pids(cluster: LocalCluster) -> dict[str, int | None]:
    return {m["name"]: cluster.node_pid(m["name"]) for m in cluster.members()}


def fill(cluster: LocalCluster) -> dict[str, str]:
    with cluster.cluster_client() as client:
        written = {f"k:{n}": str(n) for n in range(KEYS)}
        for start in range(0, KEYS, 1000):
            client.mset_nonatomic(dict(list(written.items())[start : start + 1000]))
    return written


def assert_everything_back(cluster: LocalCluster, written: dict[str, str], load: Load) -> None:
    """No client command failed, no acknowledged write or earlier key lost, and the cluster is
    whole: 3 masters with a linked replica each, by redis-cli."""
    output = redis_cli_check(cluster)
    assert output.count("slots |") == 3 and "1 slaves" in output, output
    with cluster.cluster_client() as client:
        load.assert_nothing_failed_or_lost(client)
        keys = list(written)
        assert client.mget_nonatomic(keys) == [written[k] for k in keys]


def test_live_settings_reach_every_node_without_a_restart(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    cluster = cluster_3x1
    before = pids(cluster)
    with Load(cluster.cluster_client(), cluster.cluster_client) as load:
        redkube.ok(
            "up", "--name", cluster.name,
            "--config", "maxmemory-policy=allkeys-lru", "--config", "hz=20",
            "--config", "maxmemory=200mb",
        )  # fmt: skip
    assert config_everywhere(cluster, "maxmemory-policy") == {"allkeys-lru"}
    assert config_everywhere(cluster, "hz") == {"20"}
    assert config_everywhere(cluster, "maxmemory") == {str(200 * 1024 * 1024)}
    assert pids(cluster) == before, "a live setting restarted a node"
    assert load.acked_log.failed_commands == 0 and not load.traffic_log.failed
    said = " ".join(cluster.events())
    assert "set hz 20, maxmemory 200mb, maxmemory-policy allkeys-lru live on 6 nodes" in said, said
    status = cluster.wait_ready()
    assert status["rollout"]["updated"] == 6 and status["rollout"]["total"] == 6, status


@pytest.mark.timeout(300)
def test_a_restart_setting_rolls_replicas_first_and_masters_after_a_failover(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    cluster = cluster_3x1
    written = fill(cluster)
    masters_before = set(cluster.masters())
    before = pids(cluster)
    with Load(cluster.cluster_client(), cluster.cluster_client) as load:
        # `databases` cannot change at run time (CONFIG SET refuses it): every node restarts.
        redkube.ok("up", "--name", cluster.name, "--config", "databases=4")
    assert config_everywhere(cluster, "databases") == {"4"}
    after = pids(cluster)
    assert all(after[name] != pid for name, pid in before.items()), (before, after)
    # Each old master handed its shard over before it restarted: the masters are the others.
    assert not set(cluster.masters()) & masters_before
    restarts = [e for e in cluster.events() if e.startswith(("restart ", "failover "))]
    assert len([e for e in restarts if e.startswith("restart ")]) == 6, restarts
    # Replicas first: the three replicas restart before the first failover.
    assert all(e.startswith("restart ") for e in restarts[:3]), restarts
    assert all(e.startswith("failover (default)") for e in restarts[3::2]), restarts
    assert_everything_back(cluster, written, load)


@pytest.mark.timeout(300)
def test_redis_7_to_valkey_9_under_load(redkube: Redkube) -> None:
    redis = server_path("redis")
    valkey = server_path("valkey")
    assert redis is not None and valkey is not None
    cluster = redkube.up_cluster("mig", shards=3, replicas=1, server=redis)
    written = fill(cluster)
    assert versions(cluster) == {"7.0.15"}
    with Load(cluster.cluster_client(), cluster.cluster_client) as load:
        done = redkube.ok("up", "--name", cluster.name, "--server", valkey)
    assert versions(cluster) == {"9.1.2"}
    assert cluster.record["server"] == valkey
    assert "is ready" in done.stdout
    assert_everything_back(cluster, written, load)


@pytest.mark.timeout(300)
def test_valkey_9_0_to_9_1_under_load(redkube: Redkube, valkey_9_0: str) -> None:
    valkey = server_path("valkey")
    assert valkey is not None
    cluster = redkube.up_cluster("minor", shards=3, replicas=1, server=valkey_9_0)
    written = fill(cluster)
    assert versions(cluster) == {"9.0.0"}
    with Load(cluster.cluster_client(), cluster.cluster_client) as load:
        redkube.ok("up", "--name", cluster.name, "--server", valkey)
    assert versions(cluster) == {"9.1.2"}
    assert_everything_back(cluster, written, load)


def test_a_change_the_data_cannot_survive_is_refused_before_any_restart(
    redkube: Redkube,
) -> None:
    redis = server_path("redis")
    valkey = server_path("valkey")
    assert redis is not None and valkey is not None
    cluster = redkube.up_cluster("down", shards=3, replicas=1, server=valkey)
    before = pids(cluster)
    done = redkube.run("up", "--name", cluster.name, "--server", redis)
    assert done.returncode != 0
    assert "Redis 7.0 cannot load the data Valkey 9.1 writes" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert cluster.record["server"] == valkey
    assert pids(cluster) == before
    assert versions(cluster) == {"9.1.2"}


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("maxmemory=lots", "config maxmemory must be"),
        ("port=7000", "redkube manages this setting itself"),
        ("hz", "expected KEY=VALUE"),
    ],
)
def test_bad_settings_are_refused_in_one_line(
    redkube: Redkube, cluster_3x1: LocalCluster, option: str, said: str
) -> None:
    before = cluster_3x1.record
    done = redkube.run("up", "--name", cluster_3x1.name, "--config", option)
    assert done.returncode != 0
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert cluster_3x1.record == before


def test_a_setting_the_server_refuses_at_run_time_is_reported_and_nothing_restarts(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    """A replication backlog of 0 bytes has the format of a size, but CONFIG SET refuses it: the
    status says why, and no node is stopped or restarted for it."""
    cluster = cluster_3x1
    before = pids(cluster)
    done = redkube.run(
        "up", "--name", cluster.name, "--config", "repl-backlog-size=0", "--timeout", "5"
    )
    assert done.returncode != 0
    status = cluster.status()
    assert status["phase"] == "Updating", status
    assert "repl-backlog-size" in (status["error"] or ""), status
    assert pids(cluster) == before


@pytest.mark.timeout(300)
def test_a_change_made_half_way_through_a_roll_wins(
    redkube: Redkube, cluster_3x1: LocalCluster
) -> None:
    """A second restart setting while the first roll runs: every node ends on the second, the
    nodes the first roll had reached restarted once more, none left stopped."""
    cluster = cluster_3x1
    first = subprocess.Popen(
        [sys.executable, "-m", "redkube", "up", "--name", cluster.name,
         "--config", "databases=4"],
        env=redkube.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: any(e.startswith("restart ") for e in cluster.events()) or None,
            60,
            "the first roll's first restart",
            every=0.005,
        )
        redkube.ok("up", "--name", cluster.name, "--config", "databases=8")
    finally:
        # It exits at once either way: done (it finished first) or told another `up` took
        # over (a wait for a revision that will never come would end only at its timeout).
        first.wait(timeout=30)
    assert config_everywhere(cluster, "databases") == {"8"}
    status = cluster.wait_ready()
    assert status["rollout"]["updated"] == 6, status
    assert all(pid is not None for pid in pids(cluster).values())


def test_a_shard_without_replicas_restarts_in_place_with_a_warning_and_the_outage_measured(
    redkube: Redkube, server: str
) -> None:
    cluster = redkube.up_cluster("alone", shards=3, replicas=0, server=server)
    written = fill(cluster)
    redkube.ok("up", "--name", cluster.name, "--config", "databases=4")
    assert config_everywhere(cluster, "databases") == {"4"}
    said = cluster.events()
    warnings = [e for e in said if e.startswith("warning: restart ")]
    assert len(warnings) == 3 and all("has no replica" in e for e in warnings), said
    outages = [e for e in said if "unavailable (restarted in place)" in e]
    assert len(outages) == 3, said
    with cluster.cluster_client() as client:  # the data came back from the AOF
        keys = list(written)
        assert client.mget_nonatomic(keys) == [written[k] for k in keys]
