"""TLS against plain TCP: throughput and p99 latency of the same cluster shape (3 shards x 1
replica, Redis 7.0 from Debian, built with TLS), measured by the same client, `redis-benchmark
--cluster` (with `--tls --cacert` against the TLS cluster), in one run. Rounds alternate
between the two clusters so that both see the same machine.

Run: python bench/tls.py [--server PATH] [--rounds 3] [--requests 200000] [--clients 50]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import default_server

TESTS = ("SET", "GET")


def start(home: Path, name: str, server: str, pool: str, tls: bool) -> None:
    env = {**os.environ, "REDKUBE_HOME": str(home), "REDKUBE_ADDRESS_POOL": pool}
    subprocess.run(
        [sys.executable, "-m", "redkube", "up", "--name", name, "--server", server,
         *(["--tls"] if tls else []), "--timeout", "120"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def stop(home: Path, name: str) -> None:
    env = {**os.environ, "REDKUBE_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "redkube", "down", "--name", name, "--purge"],
        env=env, check=False, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def benchmark(
    home: Path, name: str, ip: str, tls: bool, requests: int, clients: int
) -> dict[str, tuple[float, float]]:
    """Per test: (requests per second, p99 in ms)."""
    tool = shutil.which("redis-benchmark")
    assert tool is not None, "redis-benchmark (Debian redis-tools) is required"
    password = (home / name / "password").read_text().strip()
    options = ["--tls", "--cacert", str(home / name / "tls" / "ca.crt")] if tls else []
    done = subprocess.run(
        [tool, *options, "--cluster", "-h", ip, "-p", "6379", "-a", password,
         "-t", ",".join(t.lower() for t in TESTS), "-n", str(requests), "-c", str(clients),
         "-r", "100000", "--csv"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    # In cluster mode the CSV comes after a list of the masters.
    table = done.stdout[done.stdout.index('"test"') :]
    rows = csv.DictReader(io.StringIO(table))
    return {
        row["test"]: (float(row["rps"]), float(row["p99_latency_ms"]))
        for row in rows
        if row["test"] in TESTS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="redkube-bench-tls-"))
    shapes = {"plain": ("127.0.73.0/24", False), "tls": ("127.0.74.0/24", True)}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        kind: {t: [] for t in TESTS} for kind in shapes
    }
    try:
        for kind, (pool, tls) in shapes.items():
            start(home, kind, args.server, pool, tls)
        for round_number in range(1, args.rounds + 1):
            for kind, (pool, tls) in shapes.items():
                ip = pool.replace("0/24", "1")
                measured = benchmark(home, kind, ip, tls, args.requests, args.clients)
                for test, value in measured.items():
                    results[kind][test].append(value)
                print(f"round {round_number} {kind}: {measured}", flush=True)
    finally:
        for kind in shapes:
            stop(home, kind)
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"\nredis-benchmark --cluster, {args.requests} requests, {args.clients} clients, "
        f"median of {args.rounds} rounds, {args.server}"
    )
    print(f"{'test':5} {'plain rps':>11} {'tls rps':>11} {'ratio':>6} {'plain p99':>10} "
          f"{'tls p99':>9}")  # fmt: skip
    for test in TESTS:
        plain_rps = statistics.median(r for r, _ in results["plain"][test])
        tls_rps = statistics.median(r for r, _ in results["tls"][test])
        plain_p99 = statistics.median(p for _, p in results["plain"][test])
        tls_p99 = statistics.median(p for _, p in results["tls"][test])
        print(
            f"{test:5} {plain_rps:11.0f} {tls_rps:11.0f} {tls_rps / plain_rps:6.2f} "
            f"{plain_p99:8.3f}ms {tls_p99:7.3f}ms"
        )


if __name__ == "__main__":
    main()
