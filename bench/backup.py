"""Backup and restore throughput (MB/s and keys/s) of a local 3 shards x 1 replica cluster
holding --megabytes of data: `redkube backup` (snapshots on the replicas, each checked by loading
it in a scratch server) against the reference, `redis-cli --rdb` from each master in turn, in
the same run; then `redkube restore` into as many shards and into 5 (no reference: redis-cli
has no restore). Local files only: the S3 target is not built yet.

Run: python bench/backup.py [--server PATH] [--megabytes 1024] [--value-bytes 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis.cluster import ClusterNode, RedisCluster
from reference import default_server

POOL = "127.0.76.0/24"
CHUNK = 5000


def redkube(home: Path, *args: str) -> str:
    env = {**os.environ, "REDKUBE_HOME": str(home), "REDKUBE_ADDRESS_POOL": POOL}
    done = subprocess.run(
        [sys.executable, "-m", "redkube", *args], env=env, capture_output=True, text=True,
        check=False, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"redkube {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def record(home: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((home / name / "cluster.json").read_text())
    return data


def fill(home: Path, name: str, megabytes: int, value_bytes: int) -> int:
    members = record(home, name)["members"]
    assert isinstance(members, list)
    password = (home / name / "password").read_text().strip()
    client = RedisCluster(
        startup_nodes=[ClusterNode(m["ip"], 6379) for m in members], password=password
    )
    keys = megabytes * 1024 * 1024 // value_bytes
    value = b"x" * value_bytes
    started = time.monotonic()
    for start in range(0, keys, CHUNK):
        pipe = client.pipeline()
        for i in range(start, min(start + CHUNK, keys)):
            pipe.set(f"bench:{i}", value)
        pipe.execute()
        if start % (CHUNK * 40) == 0:
            print(f"  filled {start:,} of {keys:,} keys", flush=True)
    client.close()
    print(f"filled {keys:,} keys of {value_bytes} bytes in {time.monotonic() - started:.0f}s")
    return keys


def reference_backup(home: Path, name: str, folder: Path) -> float:
    """`redis-cli --rdb` from each master in turn, as the users of other operators script it."""
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli (Debian redis-tools) is required"
    password = (home / name / "password").read_text().strip()
    env = {**os.environ, "REDISCLI_AUTH": password}
    members = record(home, name)["members"]
    assert isinstance(members, list)
    masters = [m["ip"] for m in members if m["ordinal"] == 0]
    folder.mkdir()
    started = time.monotonic()
    for number, ip in enumerate(masters):
        subprocess.run(
            [cli, "-h", ip, "-p", "6379", "--rdb", str(folder / f"master-{number}.rdb")],
            env=env, check=True, capture_output=True, timeout=3600,
        )  # fmt: skip
    return time.monotonic() - started


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.rdb"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--value-bytes", type=int, default=1000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="redkube-bench-backup-"))
    work = Path(tempfile.mkdtemp(prefix="redkube-bench-backup-files-"))
    try:
        redkube(home, "up", "--name", "data", "--server", args.server, "--timeout", "300")
        keys = fill(home, "data", args.megabytes, args.value_bytes)
        started = time.monotonic()
        redkube(home, "backup", "--name", "data", "--to", str(work / "redkube"))
        ours = time.monotonic() - started
        theirs = reference_backup(home, "data", work / "reference")
        ours_mb = size_of(work / "redkube") / 1024 / 1024
        theirs_mb = size_of(work / "reference") / 1024 / 1024
        restores = []
        for name, shards in (("same", 3), ("five", 5)):
            started = time.monotonic()
            redkube(
                home, "restore", "--from", str(work / "redkube"), "--name", name,
                "--shards", str(shards), "--server", args.server, "--timeout", "300",
            )  # fmt: skip
            restores.append((shards, time.monotonic() - started))
            redkube(home, "down", "--name", name, "--purge")
    finally:
        for name in ("data", "same", "five"):
            env = {**os.environ, "REDKUBE_HOME": str(home)}
            subprocess.run(
                [sys.executable, "-m", "redkube", "down", "--name", name, "--purge"],
                env=env, check=False, capture_output=True,
            )  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{keys:,} keys, {args.server}, 3 shards x 1 replica")
    print(f"{'':34} {'seconds':>8} {'MB/s':>8} {'keys/s':>10}")
    print(f"{'redkube backup (replicas, checked)':34} {ours:8.1f} {ours_mb / ours:8.1f} "
          f"{keys / ours:10,.0f}")  # fmt: skip
    print(f"{'redis-cli --rdb, each master':34} {theirs:8.1f} {theirs_mb / theirs:8.1f} "
          f"{keys / theirs:10,.0f}")  # fmt: skip
    print(f"backup time ratio redkube / redis-cli --rdb: {ours / theirs:.2f}")
    for shards, seconds in restores:
        label = f"redkube restore, {shards} shards (+ start)"
        print(f"{label:34} {seconds:8.1f} {ours_mb / seconds:8.1f} {keys / seconds:10,.0f}")


if __name__ == "__main__":
    main()
