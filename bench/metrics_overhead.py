"""What metrics cost: the redis_exporter sidecars (one per node, as in every Pod on Kubernetes)
and redkube's own loop with its metrics (the local supervisor runs the operator's Reconciler and
LoopMetrics), for a 3x1 and a 10x1 cluster of real servers, against the servers themselves (the
reference: the processes being watched, in the same run).

Each shape runs a local cluster (`redkube up --metrics-port`) under a light steady load (a
client doing SET/GET), starts one redis_exporter per node (the binary
scripts/build-redis-exporter.sh builds), then, for `--seconds`, scrapes every exporter and the
supervisor once per `--interval` (as Prometheus would) and reads each process's CPU time
(/proc/PID/stat) and RSS (/proc/PID/status) before and after. Prints CPU (% of one core) and
RSS per process kind, the scrape durations (median, max), and the ratios to the servers'.

Run: python bench/metrics_overhead.py [--server PATH] [--seconds 60] [--interval 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import default_server

EXPORTER = Path.home() / ".cache/redkube/bin/redis-exporter-v1.74.0/redis_exporter"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Kind:
    """The processes of one kind (servers, exporters, the supervisor)."""

    pids: list[int]
    cpu_before: float = 0.0
    cpu_after: float = 0.0
    rss: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.cpu_before = sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> None:
        self.cpu_after = sum(cpu_seconds(pid) for pid in self.pids)
        self.rss = [rss_bytes(pid) for pid in self.pids]

    def cpu_percent(self, seconds: float) -> float:
        return 100 * (self.cpu_after - self.cpu_before) / seconds


def redkube(home: Path, pool: str, *args: str) -> None:
    env = {**os.environ, "REDKUBE_HOME": str(home), "REDKUBE_ADDRESS_POOL": pool}
    subprocess.run([sys.executable, "-m", "redkube", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def load(startup: tuple[str, int], password: str, stop: threading.Event) -> None:
    """A light steady load: SET then GET, about 200 commands a second."""
    client = RedisCluster(host=startup[0], port=startup[1], password=password)
    i = 0
    while not stop.is_set():
        client.set(f"key:{i % 10_000}", "x" * 100)
        client.get(f"key:{(i * 7) % 10_000}")
        i += 1
        time.sleep(0.01)
    client.close()


def scrape(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read()
    assert body, url
    return time.monotonic() - started


def measure(
    server: str, shards: int, pool: str, seconds: float, interval: float
) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="redkube-bench-metrics-"))
    name = f"m{shards}"
    metrics_port = free_port()
    redkube(
        home, pool, "up", "--name", name, "--shards", str(shards), "--replicas", "1",
        "--server", server, "--metrics-port", str(metrics_port), "--timeout", "180",
    )  # fmt: skip
    directory = home / name
    exporters: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        record = json.loads((directory / "cluster.json").read_text())
        password = (directory / "password").read_text().strip()
        members = record["members"]
        server_pids = [int((directory / "nodes" / m["name"] / "pid").read_text()) for m in members]
        supervisor_pid = int((directory / "supervisor.pid").read_text())
        urls = [f"http://127.0.0.1:{metrics_port}/metrics"]
        for member in members:
            port = free_port()
            env = {"REDIS_ADDR": f"redis://{member['ip']}:6379", "REDIS_PASSWORD": password,
                   "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}"}  # fmt: skip
            exporters.append(
                subprocess.Popen(
                    [str(EXPORTER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            urls.append(f"http://127.0.0.1:{port}/metrics")
        for url in urls:  # each answers (and the first scrape's set-up is not measured)
            deadline = time.monotonic() + 30
            while True:
                try:
                    scrape(url)
                    break
                except OSError:
                    assert time.monotonic() < deadline, url
                    time.sleep(0.2)
        with redis.Redis(host=members[0]["ip"], port=6379, password=password) as one:
            assert one.ping()
        worker = threading.Thread(
            target=load, args=((members[0]["ip"], 6379), password, stop), daemon=True
        )
        worker.start()
        kinds = {
            "servers": Kind(server_pids),
            "exporters": Kind([p.pid for p in exporters]),
            "supervisor": Kind([supervisor_pid]),
        }
        for kind in kinds.values():
            kind.start()
        started = time.monotonic()
        exporter_scrapes: list[float] = []
        supervisor_scrapes: list[float] = []
        while time.monotonic() - started < seconds:
            tick = time.monotonic()
            supervisor_scrapes.append(scrape(urls[0]))
            exporter_scrapes += [scrape(url) for url in urls[1:]]
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
        elapsed = time.monotonic() - started
        for kind in kinds.values():
            kind.stop()
        return {
            "shape": f"{shards}x1",
            "seconds": elapsed,
            "kinds": kinds,
            "exporter_scrapes": exporter_scrapes,
            "supervisor_scrapes": supervisor_scrapes,
        }
    finally:
        stop.set()
        for process in exporters:
            process.terminate()
            process.wait(timeout=10)
        redkube(home, pool, "down", "--name", name, "--purge")


def report(result: dict[str, object]) -> None:
    kinds = result["kinds"]
    assert isinstance(kinds, dict)
    seconds = float(str(result["seconds"]))
    servers = kinds["servers"]
    print(f"\n{result['shape']} over {seconds:.0f} s:")
    for label, kind in kinds.items():
        each_rss = statistics.mean(kind.rss) / 2**20
        cpu = kind.cpu_percent(seconds)
        line = (
            f"  {label:<10} {len(kind.pids):>2} processes: CPU {cpu:6.2f}% of a core in all"
            f" ({cpu / len(kind.pids):5.2f}% each), RSS {each_rss:6.1f} MiB each"
        )
        if label != "servers":
            line += (
                f"; vs the servers: CPU x{cpu / max(servers.cpu_percent(seconds), 1e-9):.2f},"
                f" RSS x{sum(kind.rss) / sum(servers.rss):.2f}"
            )
        print(line)
    for label in ("exporter_scrapes", "supervisor_scrapes"):
        times = result[label]
        assert isinstance(times, list)
        median, longest = statistics.median(times) * 1000, max(times) * 1000
        print(
            f"  {label.replace('_', ' ')}: {len(times)}, median {median:.1f} ms,"
            f" max {longest:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=5)
    args = parser.parse_args()
    if not EXPORTER.is_file():
        sys.exit(f"{EXPORTER} missing: run scripts/build-redis-exporter.sh")
    for shards, pool in ((3, "127.0.77.0/24"), (10, "127.0.78.0/24")):
        report(measure(args.server, shards, pool, args.seconds, args.interval))


if __name__ == "__main__":
    main()
