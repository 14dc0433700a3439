"""Checks made with tools redkube did not write: redis-cli and redis-py."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from redis.cluster import RedisCluster

from tests.clusters import LocalCluster


def redis_cli_check(cluster: LocalCluster) -> str:
    """`redis-cli --cluster check` must find every slot covered and all nodes agreeing."""
    user = ["--user", cluster.username] if cluster.username else []
    ip = cluster.members()[0]["ip"]
    return redis_cli_check_at(ip, cluster.password, [*cluster.cli_tls, *user])


def redis_cli_check_at(ip: str, password: str, options: Sequence[str] = ()) -> str:
    """`redis-cli --cluster check` through the node at `ip`, port 6379 (``options``: redis-cli's
    TLS options, its ACL user)."""
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli (Debian redis-tools) is required"
    done = subprocess.run(
        [cli, *options, "-a", password, "--no-auth-warning", "--cluster", "check", f"{ip}:6379"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "[OK] All nodes agree about slots configuration." in output, output
    assert "[OK] All 16384 slots covered." in output, output
    assert "[ERR]" not in output and "[WARNING]" not in output, output
    return output


def replication_links(cluster: LocalCluster) -> dict[str, str]:
    """Replica member name -> master_link_status, read with INFO replication."""
    links: dict[str, str] = {}
    for member in cluster.members():
        with cluster.client(member["name"]) as client:
            info = client.info("replication")
        if info["role"] == "slave":
            links[member["name"]] = str(info["master_link_status"])
    return links


def assert_fully_linked(cluster: LocalCluster) -> None:
    spec = cluster.record["spec"]
    links = replication_links(cluster)
    assert len(links) == spec["shards"] * spec["replicas"], links
    assert set(links.values()) <= {"up"}, links


def assert_replicas_apart(cluster: LocalCluster) -> None:
    """No replica shares a (fake) host with its master; checked from CLUSTER NODES."""
    host_of = {m["ip"]: m["host"] for m in cluster.members()}
    with cluster.client(cluster.members()[0]["name"]) as client:
        nodes = client.execute_command("CLUSTER", "NODES")
    entries = [line.split() for line in str(nodes).splitlines()]
    ip_of = {e[0]: e[1].split(":")[0] for e in entries}
    for entry in entries:
        if entry[3] != "-":
            assert host_of[ip_of[entry[0]]] != host_of[ip_of[entry[3]]], entry


def write_keys(client: RedisCluster, count: int, prefix: str = "key") -> dict[str, str]:
    written = {f"{prefix}:{i}": f"value-{i}" for i in range(count)}
    items = list(written.items())
    for start in range(0, count, 500):
        pipe = client.pipeline()
        for key, value in items[start : start + 500]:
            pipe.set(key, value)
        assert all(pipe.execute())
    return written


def assert_keys(client: RedisCluster, expected: dict[str, str]) -> None:
    keys = list(expected)
    missing: list[str] = []
    for start in range(0, len(keys), 500):
        pipe = client.pipeline()
        for key in keys[start : start + 500]:
            pipe.get(key)
        for key, value in zip(keys[start : start + 500], pipe.execute(), strict=True):
            if value != expected[key]:
                missing.append(key)
    assert not missing, f"{len(missing)} of {len(keys)} keys lost or wrong, e.g. {missing[:5]}"
