"""Driving the real CLI and reading a local cluster's state, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.cluster import ClusterNode, RedisCluster

from redkube.platform.local.layout import pid_alive as alive

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:
            last = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


@dataclass
class LocalCluster:
    name: str
    dir: Path

    @property
    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "cluster.json").read_text())
        return data

    @property
    def password(self) -> str:
        return (self.dir / "password").read_text().strip()

    @property
    def username(self) -> str | None:
        """redkube's own ACL user once the cluster has users (None: the default user)."""
        marker = self.dir / "admin-user"
        return marker.read_text().strip() if marker.exists() else None

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "status.json").read_text())
        return data

    def members(self) -> list[dict[str, Any]]:
        members: list[dict[str, Any]] = self.record["members"]
        return members

    def member(self, name: str) -> dict[str, Any]:
        return next(m for m in self.members() if m["name"] == name)

    @property
    def tls(self) -> dict[str, Any]:
        """redis-py's TLS arguments for a cluster made with --tls (the CA verified, the host
        name checked, redkube's client certificate presented); none without."""
        if not self.record["spec"].get("tls"):
            return {}
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.dir / "tls" / "ca.crt"),
            "ssl_certfile": str(self.dir / "tls" / "client.crt"),
            "ssl_keyfile": str(self.dir / "tls" / "client.key"),
        }

    @property
    def cli_tls(self) -> list[str]:
        """redis-cli's TLS options, the same way."""
        tls = self.tls
        if not tls:
            return []
        return [
            "--tls", "--cacert", tls["ssl_ca_certs"],
            "--cert", tls["ssl_certfile"], "--key", tls["ssl_keyfile"],
        ]  # fmt: skip

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(
            host=self.member(name)["ip"],
            port=6379,
            username=self.username,
            password=self.password,
            decode_responses=True,
            socket_timeout=5,
            **self.tls,
        )

    def cluster_client(self) -> RedisCluster:
        nodes = [ClusterNode(m["ip"], 6379) for m in self.members()]
        return RedisCluster(
            startup_nodes=nodes,
            username=self.username,
            password=self.password,
            decode_responses=True,
            socket_timeout=2,
            socket_connect_timeout=1,
            **self.tls,
        )

    def node_pid(self, name: str) -> int | None:
        try:
            return int((self.dir / "nodes" / name / "pid").read_text())
        except (OSError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        try:
            return int((self.dir / "supervisor.pid").read_text())
        except (OSError, ValueError):
            return None

    def roles(self) -> dict[str, str]:
        """Member name -> 'master' / 'slave', as each node reports it (ROLE)."""
        found: dict[str, str] = {}
        for member in self.members():
            with self.client(member["name"]) as client:
                found[member["name"]] = str(client.execute_command("ROLE")[0])
        return found

    def masters(self) -> list[str]:
        return [name for name, role in self.roles().items() if role == "master"]

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        return wait_for(
            lambda: s if (s := self.status())["phase"] == "Ready" else None,
            timeout,
            f"{self.name} to report phase Ready",
        )

    def wait_unready(self, timeout: float = 30.0) -> None:
        wait_for(lambda: self.status()["phase"] != "Ready", timeout, "the loop to notice")

    def events(self) -> list[str]:
        return [e["message"] for e in self.status()["events"]]


class Redkube:
    def __init__(self, home: Path, pool: str) -> None:
        self.home = home
        self.pool = pool
        self.env = {**os.environ, "REDKUBE_HOME": str(home), "REDKUBE_ADDRESS_POOL": pool}

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "redkube", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args)
        assert done.returncode == 0, f"redkube {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        return done

    def up_cluster(
        self, name: str, shards: int, replicas: int, server: str, *extra: str
    ) -> LocalCluster:
        self.ok(
            "up",
            "--name",
            name,
            "--shards",
            str(shards),
            "--replicas",
            str(replicas),
            "--server",
            server,
            *extra,
        )
        return LocalCluster(name, self.home / name)


def stop_everything(cli: Redkube) -> None:
    """Stop every cluster under this home; then make sure no process of ours survived."""
    if not cli.home.is_dir():
        return
    for record in cli.home.glob("*/cluster.json"):
        cluster = LocalCluster(record.parent.name, record.parent)
        if cluster.record.get("format") != 1:
            continue  # a deliberately foreign record: nothing of ours runs from it
        pids = [cluster.supervisor_pid()] + [cluster.node_pid(m["name"]) for m in cluster.members()]
        cli.run("down", "--name", cluster.name)
        for pid in pids:
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"process {pid} of {cluster.name} outlived `redkube down`")
