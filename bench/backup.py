"""Backup and restore throughput (MB/s and keys/s) of a local 3 shards x 1 replica cluster
holding --megabytes of data: `redkube backup` (snapshots on the replicas, each checked by loading
it in a scratch server) against the reference, `redis-cli --rdb` from each master in turn, in
the same run, and the operator's way (each snapshot received from its replica over the network,
`back_up_streamed`, as on Kubernetes); then `redkube restore` into as many shards and into 5
(no reference: redis-cli has no restore). With --s3, both keep the backup in a real
S3-compatible server (the Versity gateway, scripts/build-versitygw.sh, on loopback): the
reference then uploads each file with boto3's upload_file, a common S3 client.

Run: python bench/backup.py [--server PATH] [--megabytes 1024] [--value-bytes 1000] [--s3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from redis.cluster import ClusterNode, RedisCluster
from reference import default_server

POOL = "127.0.76.0/24"
CHUNK = 5000
VERSITYGW = Path.home() / ".cache/redkube/bin/versitygw-v1.8.0/versitygw"
ACCESS, SECRET = "bench", "bench-secret-0123456789"
S3_ENV: dict[str, str] = {}  # the S3 settings of redkube's runs, when --s3


def start_s3(root: Path) -> subprocess.Popen[bytes]:
    """The Versity gateway on a free loopback port, its posix backend in ``root``, a bucket
    `bench`; S3_ENV says where it is."""
    if not VERSITYGW.is_file():
        raise SystemExit(f"{VERSITYGW} missing: run scripts/build-versitygw.sh")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(VERSITYGW), "--access", ACCESS, "--secret", SECRET, "--port",
         f"127.0.0.1:{port}", "posix", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    S3_ENV.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
    })  # fmt: skip
    for _ in range(300):
        try:
            s3_client().create_bucket(Bucket="bench")
            return process
        except Exception:  # not listening yet
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("versitygw did not answer")


def s3_client() -> Any:
    return boto3.client(
        "s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"], aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET, region_name="us-east-1",
    )  # fmt: skip


def redkube(home: Path, *args: str) -> str:
    env = {**os.environ, **S3_ENV, "REDKUBE_HOME": str(home), "REDKUBE_ADDRESS_POOL": POOL}
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
    # Random bytes: values an RDB cannot compress (LZF), so the snapshots are as big as the data.
    pool = os.urandom(1 << 20)
    started = time.monotonic()
    for start in range(0, keys, CHUNK):
        pipe = client.pipeline()
        for i in range(start, min(start + CHUNK, keys)):
            offset = (i * 7919) % (len(pool) - value_bytes)
            pipe.set(f"bench:{i}", pool[offset : offset + value_bytes])
        pipe.execute()
        if start % (CHUNK * 40) == 0:
            print(f"  filled {start:,} of {keys:,} keys", flush=True)
    client.close()
    print(f"filled {keys:,} keys of {value_bytes} bytes in {time.monotonic() - started:.0f}s")
    return keys


def reference_backup(home: Path, name: str, folder: Path, s3: bool) -> float:
    """`redis-cli --rdb` from each master in turn, as the users of other operators script it;
    with ``s3``, each file then uploaded with boto3."""
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
        if s3:
            client = s3_client()
            file = folder / f"master-{number}.rdb"
            client.upload_file(str(file), "bench", f"reference/{file.name}")
    return time.monotonic() - started


def streamed_backup(
    home: Path, name: str, target: str, work: Path, consistent: bool = False
) -> float:
    """The operator's way (no file of a node read): each shard's snapshot received from its
    replica over the network (REPLCONF rdb-only + SYNC), all shards at once, then stored; with
    ``consistent``, writes paused on every master until every snapshot forked."""
    os.environ.update({**S3_ENV, "REDKUBE_HOME": str(home)})
    from redkube.admin.connections import ClientPool
    from redkube.cli.local import observe_record
    from redkube.control.backing_up import back_up_streamed
    from redkube.platform.local.layout import ClusterLayout, state_root
    from redkube.platform.stores import open_store

    async def run() -> None:
        layout = ClusterLayout(state_root(), name)
        record = layout.load()
        observation = await observe_record(layout, record)
        pool = ClientPool(layout.credentials().current)
        try:
            await back_up_streamed(record.spec, "bench", observation, pool, open_store(target),
                                   work, lambda _: None, lambda _done, _of: None,
                                   consistent)  # fmt: skip
        finally:
            await pool.close()

    work.mkdir()
    started = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - started


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.rdb"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--value-bytes", type=int, default=1000)
    parser.add_argument("--s3", action="store_true", help="keep the backups in S3 (versitygw)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="redkube-bench-backup-"))
    work = Path(tempfile.mkdtemp(prefix="redkube-bench-backup-files-"))
    gateway = None
    if args.s3:
        (work / "s3").mkdir()
        gateway = start_s3(work / "s3")
    target = "s3://bench/redkube" if args.s3 else str(work / "redkube")
    ours_files = work / "s3" / "bench" / "redkube" if args.s3 else work / "redkube"
    try:
        redkube(home, "up", "--name", "data", "--server", args.server, "--timeout", "300")
        keys = fill(home, "data", args.megabytes, args.value_bytes)
        started = time.monotonic()
        redkube(home, "backup", "--name", "data", "--to", target)
        ours = time.monotonic() - started
        streamed = streamed_backup(home, "data", target + "-streamed", work / "streamed")
        started = time.monotonic()
        redkube(home, "backup", "--name", "data", "--to", target + "-consistent", "--consistent")
        ours_consistent = time.monotonic() - started
        streamed_consistent = streamed_backup(
            home, "data", target + "-streamed-consistent", work / "streamed-consistent", True
        )
        paused = {
            way: json.loads((ours_files.parent / f"redkube-{way}" / "manifest.json").read_text())[
                "paused_ms"
            ]
            for way in ("consistent", "streamed-consistent")
        }
        theirs = reference_backup(home, "data", work / "reference", args.s3)
        ours_mb = size_of(ours_files) / 1024 / 1024
        theirs_mb = size_of(work / "reference") / 1024 / 1024
        restores = []
        for name, shards in (("same", 3), ("five", 5)):
            started = time.monotonic()
            redkube(
                home, "restore", "--from", target, "--name", name,
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
        if gateway is not None:
            gateway.terminate()
            gateway.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    kept = "in S3 (versitygw, loopback)" if args.s3 else "in a local directory"
    print(f"\n{keys:,} keys, {args.server}, 3 shards x 1 replica, backups kept {kept}")
    print(f"{'':34} {'seconds':>8} {'MB/s':>8} {'keys/s':>10}")
    print(f"{'redkube backup (replicas, checked)':34} {ours:8.1f} {ours_mb / ours:8.1f} "
          f"{keys / ours:10,.0f}")  # fmt: skip
    print(f"{'operator path (SYNC from replicas)':34} {streamed:8.1f} {ours_mb / streamed:8.1f} "
          f"{keys / streamed:10,.0f}")  # fmt: skip
    print(f"{'redkube backup --consistent':34} {ours_consistent:8.1f} "
          f"{ours_mb / ours_consistent:8.1f} {keys / ours_consistent:10,.0f}"
          f"   writes paused {paused['consistent']:.0f} ms")  # fmt: skip
    print(f"{'operator path, consistent':34} {streamed_consistent:8.1f} "
          f"{ours_mb / streamed_consistent:8.1f} {keys / streamed_consistent:10,.0f}"
          f"   writes paused {paused['streamed-consistent']:.0f} ms")  # fmt: skip
    reference = "redis-cli --rdb + boto3 upload" if args.s3 else "redis-cli --rdb, each master"
    print(f"{reference:34} {theirs:8.1f} {theirs_mb / theirs:8.1f} "
          f"{keys / theirs:10,.0f}")  # fmt: skip
    print(f"backup time ratio redkube / redis-cli --rdb: {ours / theirs:.2f}; "
          f"operator path / redis-cli --rdb: {streamed / theirs:.2f}")  # fmt: skip
    for shards, seconds in restores:
        label = f"redkube restore, {shards} shards (+ start)"
        print(f"{label:34} {seconds:8.1f} {ours_mb / seconds:8.1f} {keys / seconds:10,.0f}")


if __name__ == "__main__":
    main()
