"""Bad input gets one clear line and a non-zero exit; nothing is left half-created."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clusters import Redkube

USAGE = 2
ERROR = 1


def assert_one_line_error(done: object, status: int, *fragments: str) -> None:
    returncode = done.returncode  # type: ignore[attr-defined]
    stderr: str = done.stderr  # type: ignore[attr-defined]
    assert returncode == status, (returncode, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("redkube: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_nothing_created(redkube: Redkube, name: str) -> None:
    assert not (redkube.home / name).exists()
    leftovers = list(redkube.home.glob(".*-*")) if redkube.home.exists() else []
    assert not leftovers, leftovers


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--shards", "0"], "shards must be at least 1 (got 0)"),
        (["--shards", "-3"], "shards must be at least 1 (got -3)"),
        (["--replicas", "-1"], "replicas must be 0 or more (got -1)"),
        (["--shards", "three"], "invalid int value: 'three'"),
        (["--name", "Bad_Name"], "cluster name 'Bad_Name' must be"),
        (["--node-timeout", "5"], "node timeout must be at least 100 ms"),
        (["--hosts", "0"], "hosts must be at least 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_invalid_counts_and_names(redkube: Redkube, args: list[str], fragment: str) -> None:
    done = redkube.run("up", "--name", "demo", *[a for a in args if a != "demo"])
    if "--name" in args:
        done = redkube.run("up", *args)
    assert_one_line_error(done, USAGE, fragment)
    assert_nothing_created(redkube, "demo")


def test_more_nodes_than_free_addresses(redkube: Redkube, server: str) -> None:
    redkube.env["REDKUBE_ADDRESS_POOL"] = redkube.pool.replace(".0/24", ".0/29")  # 6 hosts
    done = redkube.run("up", "--name", "big", "--shards", "4", "--server", server)
    assert_one_line_error(done, ERROR, "need 8 free addresses but only 6 are free")
    assert_nothing_created(redkube, "big")


def test_pool_outside_loopback(redkube: Redkube, server: str) -> None:
    redkube.env["REDKUBE_ADDRESS_POOL"] = "10.1.2.0/24"
    done = redkube.run("up", "--name", "demo", "--server", server)
    assert_one_line_error(done, ERROR, "must be inside 127.0.0.0/8")
    assert_nothing_created(redkube, "demo")


@contextmanager
def listening(host: str, port: int = 6379) -> Iterator[None]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        yield


def test_busy_address_in_a_full_pool(redkube: Redkube, server: str) -> None:
    pool = redkube.pool.replace(".0/24", ".0/29")
    redkube.env["REDKUBE_ADDRESS_POOL"] = pool
    busy_host = pool.replace(".0/29", ".4")
    with listening(busy_host):
        done = redkube.run("up", "--name", "demo", "--server", server)
    assert_one_line_error(done, ERROR, "only 5 are free", f"in use by other processes: {busy_host}")
    assert_nothing_created(redkube, "demo")


def test_busy_address_of_an_existing_cluster_then_resume(redkube: Redkube, server: str) -> None:
    cluster = redkube.up_cluster("demo", 1, 1, server)
    redkube.ok("down", "--name", "demo")
    taken = cluster.members()[1]["ip"]
    with listening(taken):
        done = redkube.run("up", "--name", "demo")
    assert_one_line_error(done, ERROR, f"{taken}:6379 (node demo-0-1) is in use by another process")
    assert cluster.supervisor_pid() is None
    redkube.ok("up", "--name", "demo")
    assert cluster.wait_ready()


def test_missing_server_binary(redkube: Redkube) -> None:
    done = redkube.run("up", "--server", "/nonexistent/redis-server")
    assert_one_line_error(done, ERROR, "server binary not found: /nonexistent/redis-server")
    assert_nothing_created(redkube, "redkube")


def fake_server(tmp_path: Path, version_line: str, body: str = "exit 1") -> str:
    script = tmp_path / "fake-server"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version_line}"; exit 0; fi\n{body}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_server_too_old_for_cluster(redkube: Redkube, tmp_path: Path) -> None:
    old = fake_server(tmp_path, "Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc bits=64")
    done = redkube.run("up", "--server", old)
    assert_one_line_error(done, ERROR, "is redis 6.2.14; redkube needs redis >= 7.0")
    assert_nothing_created(redkube, "redkube")


def test_binary_that_is_not_a_redis_server(redkube: Redkube) -> None:
    done = redkube.run("up", "--server", "/bin/true")
    assert_one_line_error(done, ERROR, "is not redis-server or valkey-server")
    assert_nothing_created(redkube, "redkube")


def test_server_that_crashes_at_start(redkube: Redkube, tmp_path: Path) -> None:
    crashing = fake_server(
        tmp_path, "Redis server v=7.0.15 sha=0", body='echo "FATAL: simulated crash"; exit 1'
    )
    done = redkube.run(
        "up",
        "--name",
        "crashy",
        "--shards",
        "1",
        "--replicas",
        "0",
        "--server",
        crashing,
        "--timeout",
        "60",
    )
    assert_one_line_error(done, ERROR, "node crashy-0-0 keeps crashing", "FATAL: simulated crash")
    redkube.ok("down", "--name", "crashy", "--purge")
    assert_nothing_created(redkube, "crashy")


def test_state_from_another_version(redkube: Redkube) -> None:
    old = redkube.home / "old"
    old.mkdir(parents=True)
    (old / "cluster.json").write_text(json.dumps({"format": 99, "spec": {}}))
    for command in (["up", "--name", "old"], ["status", "--name", "old"]):
        done = redkube.run(*command)
        assert_one_line_error(done, ERROR, "state format 99; this redkube reads format 1")
    assert json.loads((old / "cluster.json").read_text())["format"] == 99


def test_a_node_timeout_change_of_a_running_cluster_is_refused(
    redkube: Redkube, server: str
) -> None:
    """Shards and replicas reshape a running cluster (tests/resharding); the node timeout cannot
    change yet."""
    redkube.up_cluster("demo", 1, 0, server)
    done = redkube.run("up", "--name", "demo", "--node-timeout", "3000")
    assert_one_line_error(done, ERROR, "runs with a node timeout of 5000 ms")


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (["status", "--name", "nope"], "no cluster named 'nope'"),
        (["down", "--name", "nope"], "no cluster named 'nope'"),
        (["kill", "nope-0-0"], "no cluster named 'nope'"),
        (["kill", "justaword"], "is not a node name"),
        (["logs", "nope-1-0"], "no cluster named 'nope'"),
    ],
)
def test_unknown_clusters_and_nodes(redkube: Redkube, command: list[str], fragment: str) -> None:
    assert_one_line_error(redkube.run(*command), ERROR, fragment)
