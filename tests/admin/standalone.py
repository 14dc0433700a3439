"""Standalone server processes for the snapshot tests (taken over the network, served as a
master): started on a range of 127.0.0.1 ports of the test module's own, with a password, each
stopped by its own pid; and a data set of five types with TTLs."""

from __future__ import annotations

import itertools
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

HOST = "127.0.0.1"
KEYS = 5000
_taken: set[int] = set()


def free_port(ports: range) -> int:
    """A port of ``ports`` nobody listens on, not yet handed out in this session."""
    for port in ports:
        if port in _taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        _taken.add(port)
        return port
    pytest.fail(f"no free port in {HOST}:{ports.start}-{ports.stop - 1}")


class Node:
    def __init__(self, port: int, client: redis.Redis, log: Path, folder: Path) -> None:
        self.port = port
        self.client = client
        self.log = log
        self.folder = folder


class Servers:
    """Server processes started by one test, each stopped by its own pid."""

    def __init__(self, root: Path, ports: range) -> None:
        self.root = root
        self.ports = ports
        self.password = secrets.token_hex(8)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.clients: list[redis.Redis] = []
        self.count = itertools.count()

    def start_server(
        self,
        binary: str,
        *options: str,
        password: bool = True,
        masterauth: bool = False,
        directory: Path | None = None,
    ) -> Node:
        """``binary`` on a free port, ready (its own pid answers), with ``options``."""
        port = free_port(self.ports)
        folder = directory or self.root / f"node-{next(self.count)}"
        folder.mkdir(exist_ok=True)
        command = [binary, "--port", str(port), "--bind", HOST, "--save", ""]
        command += ["--appendonly", "no", "--dir", str(folder), *options]
        if password:
            command += ["--requirepass", self.password]
        if masterauth:
            command += ["--masterauth", self.password]
        log = folder / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        client = redis.Redis(
            host=HOST,
            port=port,
            password=self.password if password else None,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=1,
        )
        self.clients.append(client)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"server exited {process.returncode}: {log.read_text()}")
            try:
                if client.info("server")["process_id"] == process.pid:
                    return Node(port, client, log, folder)
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            time.sleep(0.02)
        pytest.fail(f"server not ready on {HOST}:{port} in 10 s: {log.read_text()}")

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fill(client: redis.Redis, count: int = KEYS) -> None:
    """``count`` keys of five types, every seventh with a TTL, plus a compressible string."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        key = f"k:{i}"
        kind = i % 5
        if kind == 0:
            pipe.set(key, f"value-{i}")
        elif kind == 1:
            pipe.hset(key, mapping={"n": str(i), "pad": "p" * 40})
        elif kind == 2:
            pipe.rpush(key, "a", str(i), "c")
        elif kind == 3:
            pipe.sadd(key, "x", "y", str(i))
        else:
            pipe.zadd(key, {"low": i, "high": i + 0.5})
        if i % 7 == 0:
            pipe.expire(key, 3600)
    pipe.set("big", "abc" * 20_000)  # LZF-compressed in the RDB
    pipe.set("number", 123456)  # integer-encoded
    pipe.execute()
