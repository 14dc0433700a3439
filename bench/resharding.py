"""Resharding: `redkube up --shards N` on a running local cluster against the reference tools,
in the same run, on the same binary and data (300,000 keys of 100 B by default).

For redkube two figures: the move (from the first batch of slots the loop starts to the cluster
Ready; for a scale-in, to the first departing node retired) and the whole command (starting the
new nodes, joining them, and retiring the old ones included). The references time the move only
(bench/resharding_reference.py). Under load: a client doing SET in a loop during the move,
throughput and p99 latency against the same client before it.

Run: python bench/resharding.py [--keys N] [--server redis|valkey|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redis.cluster import ClusterNode, RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))

from resharding_reference import (
    REDIS_SERVER,
    log,
    raw_migrateslots,
    redis_cli_scale_in,
    redis_cli_scale_out,
    valkey_server,
)

OCTET_REDKUBE = 235


class Local:
    """A redkube local cluster in its own state directory and /24."""

    def __init__(self, server: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="redkube-bench-reshard-"))
        self.env = {
            **os.environ,
            "REDKUBE_HOME": str(self.home),
            "REDKUBE_ADDRESS_POOL": f"127.0.{OCTET_REDKUBE}.0/24",
        }
        self.server = server

    def redkube(self, *args: str) -> float:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "redkube", *args, "--name", "bench"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=900,
        )
        return time.monotonic() - started

    @property
    def dir(self) -> Path:
        return self.home / "bench"

    def ips(self) -> list[str]:
        record = json.loads((self.dir / "cluster.json").read_text())
        return [str(m["ip"]) for m in record["members"]]

    def events(self) -> list[dict[str, Any]]:
        status = json.loads((self.dir / "status.json").read_text())
        events: list[dict[str, Any]] = status["events"]
        return events

    def client(self) -> RedisCluster:
        password = (self.dir / "password").read_text().strip()
        nodes = [ClusterNode(ip, 6379) for ip in self.ips()]
        return RedisCluster(startup_nodes=nodes, password=password, socket_timeout=5)

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "redkube", "down", "--name", "bench", "--purge"],
            env=self.env,
            check=False,
            capture_output=True,
        )


def fill(client: RedisCluster, count: int) -> float:
    """The same keys as the reference's load_keys (`key:<n>`, 100 B), through RedisCluster."""
    started = time.monotonic()
    for start in range(0, count, 5000):
        pipe = client.pipeline()
        for n in range(start, min(start + 5000, count)):
            pipe.set(f"key:{n}", "x" * 100)
        pipe.execute()
    client.close()
    return time.monotonic() - started


def move_seconds(events: list[dict[str, Any]], since: float, end: str, ended: float) -> float:
    """From the first `move` event after `since` to the first event starting with `end` (or to
    `ended` when there is none)."""
    moves = [e["at"] for e in events if e["at"] >= since and e["message"].startswith("move ")]
    finish = [e["at"] for e in events if e["at"] >= since and e["message"].startswith(end)]
    assert moves, "no slot moved"
    return (min(finish) if finish else ended) - min(moves)


class Load:
    """SET in a loop through redis-py's RedisCluster; latencies per phase, failures."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {"before": [], "during": []}
        self.spans: dict[str, float] = {"before": 0.0, "during": 0.0}
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        n = 0
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                self.client.set(f"load:{n}", "x" * 100)
            except Exception as error:  # every error counts (redis-py's own bugs included)
                self.failures[f"{type(error).__name__}: {str(error)[:60]}"] += 1
                try:
                    self.client.nodes_manager.initialize()
                except Exception:
                    time.sleep(0.01)
                continue
            took = time.monotonic() - started
            self.latencies[self.phase].append(took)
            self.spans[self.phase] += took
            n += 1

    def summary(self, phase: str) -> str:
        values = sorted(self.latencies[phase])
        if not values:
            return f"{phase}: no requests"
        p99 = values[int(len(values) * 0.99) - 1 if len(values) >= 100 else -1]
        rate = len(values) / self.spans[phase] if self.spans[phase] else 0.0
        return (
            f"{phase:6} {len(values):7d} SETs, {rate:8.0f}/s while busy, "
            f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
        )


def redkube_reshard(
    server: str, keys: int, loaded: bool = False
) -> tuple[float, float, float, float, str]:
    """(3 -> 5 move, 3 -> 5 command, 5 -> 3 move, 5 -> 3 command, load summary). ``loaded``: a
    client writes all along (in this process: it takes CPU from the move on 2 cores, so the
    timed runs go without it, like the references)."""
    local = Local(server)
    try:
        local.redkube("up", "--server", server, "--shards", "3", "--replicas", "1")
        log(f"  redkube: loaded in {fill(local.client(), keys):.2f}s")
        load = Load(local.client())
        if loaded:
            load.start()
            time.sleep(2.0)
        load.phase = "during"
        since = time.time()
        out_total = local.redkube("up", "--shards", "5")
        out_move = move_seconds(local.events(), since, "\0", time.time())
        since = time.time()
        in_total = local.redkube("up", "--shards", "3")
        in_move = move_seconds(local.events(), since, "retire ", time.time())
        load.stop()
        summary = "\n".join(
            [
                load.summary("before"),
                load.summary("during"),
                f"failed SETs: {sum(load.failures.values())} {dict(load.failures)}",
            ]
        )
        return out_move, out_total, in_move, in_total, summary
    finally:
        local.down()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=300_000)
    parser.add_argument("--server", choices=["redis", "valkey", "both"], default="both")
    args = parser.parse_args()
    rows: list[str] = []
    if args.server in ("redis", "both"):
        log("Redis 7.0: redkube")
        out_move, out_total, in_move, in_total, _ = redkube_reshard(REDIS_SERVER, args.keys)
        log("Redis 7.0: redkube under load")
        *_, load = redkube_reshard(REDIS_SERVER, args.keys, loaded=True)
        log("Redis 7.0: redis-cli rebalance (3 -> 5)")
        ref_out = redis_cli_scale_out(REDIS_SERVER, args.keys)
        log("Redis 7.0: redis-cli rebalance, weight 0 (5 -> 3)")
        ref_in = redis_cli_scale_in(REDIS_SERVER, args.keys)
        rows += [
            f"Redis 7.0, 3 -> 5: redkube move {out_move:.2f}s (command {out_total:.2f}s), "
            f"redis-cli rebalance {ref_out:.2f}s: {ref_out / out_move:.1f}x faster",
            f"Redis 7.0, 5 -> 3: redkube move {in_move:.2f}s (command {in_total:.2f}s), "
            f"redis-cli rebalance {ref_in:.2f}s: {ref_in / in_move:.1f}x faster",
            "Redis 7.0 under load (redkube 3 -> 5 -> 3):\n" + load,
        ]
    if args.server in ("valkey", "both"):
        valkey = valkey_server()
        log("Valkey 9.1: redkube")
        out_move, out_total, in_move, in_total, _ = redkube_reshard(valkey, args.keys)
        log("Valkey 9.1: redkube under load")
        *_, load = redkube_reshard(valkey, args.keys, loaded=True)
        log("Valkey 9.1: raw CLUSTER MIGRATESLOTS (3 -> 5)")
        raw = raw_migrateslots(valkey, args.keys)
        log("Valkey 9.1: redis-cli rebalance, classic protocol (3 -> 5)")
        classic = redis_cli_scale_out(valkey, args.keys, octet=233)
        rows += [
            f"Valkey 9.1, 3 -> 5: redkube move {out_move:.2f}s (command {out_total:.2f}s), "
            f"raw MIGRATESLOTS {raw:.2f}s: {out_move / raw:.2f}x its time; "
            f"redis-cli rebalance (classic) {classic:.2f}s: {classic / out_move:.1f}x faster",
            f"Valkey 9.1, 5 -> 3: redkube move {in_move:.2f}s (command {in_total:.2f}s)",
            "Valkey 9.1 under load (redkube 3 -> 5 -> 3):\n" + load,
        ]
    print(f"resharding, {args.keys} keys of 100 B, 3 masters + 3 replicas, one run each")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
