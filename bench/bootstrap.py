"""Bootstrap: `redkube up` (3 shards x 1 replica) against `redis-cli --cluster create`.

Both start from nothing (no processes) on the same binary and kind of addresses. Two milestones
for each: every replica reports master_link_status:up ("linked", the issue's criterion), and every
node reports cluster_state:ok (clients can write). Run: python bench/bootstrap.py [--server PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import ReferenceCluster, all_linked, all_ok, default_server, wait_until

SHARDS, REPLICAS = 3, 1
NODES = SHARDS * (1 + REPLICAS)


def run_redkube(server: str, pool_octet: int) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="redkube-bench-"))
    env = {
        **os.environ,
        "REDKUBE_HOME": str(home),
        "REDKUBE_ADDRESS_POOL": f"127.0.{pool_octet}.0/24",
    }
    ips = [f"127.0.{pool_octet}.{i}" for i in range(1, NODES + 1)]
    linked_at: list[float] = []
    started = time.monotonic()

    def watch() -> None:
        password_file = home / "bench" / "password"
        wait_until(password_file.exists, 30, "state dir", every=0.002)
        password = password_file.read_text().strip()
        linked_at.append(
            wait_until(lambda: all_linked(ips, password, SHARDS * REPLICAS), 60, "replicas linked")
        )

    watcher = threading.Thread(target=watch)
    watcher.start()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "redkube",
            "up",
            "--name",
            "bench",
            "--server",
            server,
            "--shards",
            str(SHARDS),
            "--replicas",
            str(REPLICAS),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    ready = time.monotonic() - started
    watcher.join()
    subprocess.run(
        [sys.executable, "-m", "redkube", "down", "--name", "bench", "--purge"],
        env=env,
        check=True,
        capture_output=True,
    )
    return linked_at[0] - started, ready


def run_reference(server: str, pool_octet: int, tuned: bool) -> tuple[float, float]:
    ips = [f"127.0.{pool_octet}.{i}" for i in range(1, NODES + 1)]
    reference = ReferenceCluster(server, ips, tuned=tuned)
    started = time.monotonic()
    try:
        reference.start_processes()
        reference.create(REPLICAS)
        linked = wait_until(
            lambda: all_linked(ips, "bench-password", SHARDS * REPLICAS), 60, "replicas linked"
        )
        ok = wait_until(lambda: all_ok(ips, "bench-password"), 60, "cluster_state:ok")
    finally:
        reference.stop()
    return linked - started, max(ok, linked) - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {
        "redkube up": [],
        "redis-cli create": [],
        "redis-cli create, tuned config": [],
    }
    for run in range(args.runs):
        results["redkube up"].append(run_redkube(args.server, 240))
        results["redis-cli create"].append(run_reference(args.server, 241, tuned=False))
        results["redis-cli create, tuned config"].append(
            run_reference(args.server, 242, tuned=True)
        )
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"bootstrap 3x1, server {args.server}, median of {args.runs} runs")
    print(f"{'':32} {'linked':>8} {'ready':>8}")
    medians = {
        name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        for name, runs in results.items()
    }
    for name, (linked, ready) in medians.items():
        print(f"{name:32} {linked:7.2f}s {ready:7.2f}s")
    ours = medians["redkube up"]
    for name in ("redis-cli create", "redis-cli create, tuned config"):
        theirs = medians[name]
        print(
            f"speed-up vs {name}: linked {theirs[0] / ours[0]:.1f}x, "
            f"ready {theirs[1] / ours[1]:.1f}x"
        )


if __name__ == "__main__":
    main()
