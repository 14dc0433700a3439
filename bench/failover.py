"""Failover: SIGKILL a master under writes; time until writes to its slots succeed again.

redkube (the supervisor sees the death and runs CLUSTER FAILOVER FORCE on the replica with the
highest offset) against Redis' own election on a `redis-cli --cluster create` cluster, same
binary and the same cluster-node-timeout. The writer is redis-py's RedisCluster, writing only
keys that hash into the victim's slots. Run: python bench/failover.py [--server PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import PASSWORD, ReferenceCluster, all_linked, default_server

VICTIM_SLOTS = range(0, 5461)


def victim_keys() -> list[str]:
    return [k for k in (f"bench:{i}" for i in range(20000)) if key_slot(k.encode()) in VICTIM_SLOTS]


def port_closed(ip: str) -> bool:
    try:
        socket.create_connection((ip, 6379), timeout=0.2).close()
    except OSError:
        return True
    return False


def measure(ips: list[str], victim: str, password: str, kill: Callable[[], None]) -> float:
    """Write continuously; kill; return seconds from the kill to the first write that succeeds.

    Only writes that start after the victim's port is confirmed closed count, so a reply already
    in flight when the signal lands is not mistaken for recovery."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(ip, 6379) for ip in ips],
        password=password,
        socket_timeout=1,
        socket_connect_timeout=0.5,
    )
    keys = victim_keys()
    killed_at: list[float] = []
    dead_at: list[float] = []
    recovered_at: list[float] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                client.set(keys[n % len(keys)], n)
            except RedisError:
                time.sleep(0.005)
                continue
            if dead_at and started > dead_at[0] and not recovered_at:
                recovered_at.append(time.monotonic())
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.5)
    killed_at.append(time.monotonic())
    kill()
    deadline = time.monotonic() + 10
    while not port_closed(victim) and time.monotonic() < deadline:
        time.sleep(0.001)
    dead_at.append(time.monotonic())
    deadline = time.monotonic() + 60
    while not recovered_at and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    writer.join()
    client.close()
    if not recovered_at:
        raise TimeoutError("writes did not resume within 60 s")
    return recovered_at[0] - killed_at[0]


def run_redkube(server: str, timeout_ms: int) -> float:
    home = Path(tempfile.mkdtemp(prefix="redkube-bench-"))
    env = {**os.environ, "REDKUBE_HOME": str(home), "REDKUBE_ADDRESS_POOL": "127.0.243.0/24"}
    cli = [sys.executable, "-m", "redkube"]
    subprocess.run(
        [*cli, "up", "--name", "bench", "--server", server, "--node-timeout", str(timeout_ms)],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        record = json.loads((home / "bench" / "cluster.json").read_text())
        ips = [m["ip"] for m in record["members"]]
        password = (home / "bench" / "password").read_text().strip()
        pid = int((home / "bench" / "nodes" / "bench-0-0" / "pid").read_text())
        return measure(ips, ips[0], password, lambda: os.kill(pid, signal.SIGKILL))
    finally:
        subprocess.run(
            [*cli, "down", "--name", "bench", "--purge"], env=env, check=True, capture_output=True
        )


def run_reference(server: str, timeout_ms: int) -> float:
    ips = [f"127.0.244.{i}" for i in range(1, 7)]
    reference = ReferenceCluster(server, ips, node_timeout_ms=timeout_ms, tuned=True)
    try:
        reference.start_processes()
        reference.create(1)
        deadline = time.monotonic() + 60
        while not all_linked(ips, PASSWORD, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # past the masters' 2 s writable delay
        # redis-cli gives the first range (slot 0) to the first address.
        return measure(ips, ips[0], PASSWORD, reference.processes[0].kill)
    finally:
        reference.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--node-timeout", type=int, default=5000)
    args = parser.parse_args()
    ours: list[float] = []
    theirs: list[float] = []
    for run in range(args.runs):
        ours.append(run_redkube(args.server, args.node_timeout))
        theirs.append(run_reference(args.server, args.node_timeout))
        print(
            f"run {run + 1}/{args.runs}: redkube {ours[-1]:.2f}s, Redis election {theirs[-1]:.2f}s",
            file=sys.stderr,
        )
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"failover under writes, node timeout {args.node_timeout} ms, server {args.server}, "
        f"median of {args.runs} runs"
    )
    print(
        f"  redkube (platform-reported death, FAILOVER FORCE): {a:.2f}s "
        f"(runs: {', '.join(f'{x:.2f}' for x in ours)})"
    )
    print(
        f"  Redis' own election:                               {b:.2f}s "
        f"(runs: {', '.join(f'{x:.2f}' for x in theirs)})"
    )
    print(f"  speed-up: {b / a:.1f}x")


if __name__ == "__main__":
    main()
