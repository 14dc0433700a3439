"""A new cluster comes up fully redundant, as checked by redis-cli and redis-py."""

from __future__ import annotations

import subprocess

import pytest

from tests.checks import (
    assert_fully_linked,
    assert_keys,
    assert_replicas_apart,
    redis_cli_check,
    write_keys,
)
from tests.clusters import Redkube


@pytest.mark.parametrize(("shards", "replicas"), [(3, 1), (5, 2)])
def test_bootstrap_is_fully_redundant(
    redkube: Redkube, server: str, shards: int, replicas: int
) -> None:
    cluster = redkube.up_cluster("demo", shards=shards, replicas=replicas, server=server)

    redis_cli_check(cluster)
    assert_fully_linked(cluster)
    assert_replicas_apart(cluster)
    masters = cluster.masters()
    assert len(masters) == shards
    master_hosts = [cluster.member(name)["host"] for name in masters]
    assert len(set(master_hosts)) == min(shards, 3), master_hosts  # spread over the 3 hosts
    with cluster.cluster_client() as client:
        written = write_keys(client, 10_000)
        assert_keys(client, written)


def test_up_prints_how_to_connect(redkube: Redkube, server: str) -> None:
    done = redkube.ok(
        "up", "--name", "hello", "--shards", "1", "--replicas", "0", "--server", server
    )
    password = (redkube.home / "hello" / "password").read_text().strip()
    assert "is ready" in done.stdout
    assert password not in done.stdout  # named by its file, never printed
    mode = (redkube.home / "hello" / "password").stat().st_mode & 0o777
    assert mode == 0o600
    # The connect line, as printed (wrapped or not), works in a shell.
    said = " ".join(done.stdout.split())
    line = said.split("connect ", 1)[1].split(" python ", 1)[0]
    assert line.startswith('REDISCLI_AUTH="$(cat ') and "redis-cli -c -h" in line, line
    answered = subprocess.run(["sh", "-c", f"{line} ping"], capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip
    assert answered.stdout.strip() == "PONG", answered.stdout + answered.stderr


def test_status_shows_every_node_and_the_slot_map(redkube: Redkube, server: str) -> None:
    cluster = redkube.up_cluster("demo", shards=3, replicas=1, server=server)
    done = redkube.ok("status", "--name", "demo")
    assert "Ready" in done.stdout
    for member in cluster.members():
        assert member["name"] in done.stdout
    assert "0-5460" in done.stdout and "10923-16383" in done.stdout
    assert "slots 000" in done.stdout and "222 " in done.stdout
    assert done.stdout.count("replica") >= 3
