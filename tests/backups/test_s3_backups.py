"""`redkube backup --to s3://...` and `redkube restore --from s3://...` against a real
S3-compatible server (the Versity gateway, built from its Go module by
scripts/build-versitygw.sh, its posix backend in a directory of the test's): every key of every
type back in a cluster of another shard count (DUMP compared); the objects checked where the
server keeps them, with sha256sum; wrong credentials, a missing bucket, a damaged object and an
unfinished backup each refused with one line, nothing created."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.backups.test_local_backups import master_keys
from tests.checks import redis_cli_check
from tests.clusters import LocalCluster, Redkube
from tests.datasets import assert_same_data, dumps, fill_every_type
from tests.operator.conftest import free_port

VERSION = "v1.8.0"  # scripts/build-versitygw.sh
ACCESS, SECRET = "redkube-test", "not-a-real-secret-0123456789"
BUCKET = "backups"


@dataclass
class S3Server:
    url: str
    root: Path  # the posix backend's directory: a bucket is a directory in it

    def env(self, access: str = ACCESS, secret: str = SECRET) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET, region_name="us-east-1",
        )  # fmt: skip


def versitygw() -> Path:
    cache = os.environ.get("REDKUBE_BIN_CACHE") or str(Path.home() / ".cache" / "redkube" / "bin")
    found = Path(cache) / f"versitygw-{VERSION}" / "versitygw"
    if not found.is_file():
        pytest.fail(f"{found} missing: run scripts/build-versitygw.sh (make s3-binary)")
    return found


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    root = tmp_path / "s3"
    root.mkdir()
    port = free_port()
    log = (tmp_path / "versitygw.log").open("w")
    process = subprocess.Popen(
        [str(versitygw()), "--access", ACCESS, "--secret", SECRET,
         "--port", f"127.0.0.1:{port}", "posix", str(root)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{port}", root)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(server.url, timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (an anonymous request is refused)
            except OSError:
                assert process.poll() is None, (tmp_path / "versitygw.log").read_text()
                assert time.monotonic() < deadline, "versitygw did not answer in 60 s"
                time.sleep(0.1)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_backup_to_s3_then_restore_into_another_shard_count_keeps_every_key(
    redkube: Redkube, server: str, s3: S3Server
) -> None:
    redkube.env.update(s3.env())
    source = redkube.up_cluster("shop", 3, 1, server)
    with source.cluster_client() as client:
        keys = fill_every_type(client, 5000)
        before = dumps(client, keys)
    where = f"s3://{BUCKET}/shop/first"
    said = redkube.ok("backup", "--name", "shop", "--to", where).stdout
    assert f"in {where}: 3 shards, 5,000 keys" in said, said

    # What the server keeps, read where it keeps it: the manifest and its files, whole.
    stored = s3.root / BUCKET / "shop" / "first"
    manifest = json.loads((stored / "manifest.json").read_text())
    assert manifest["keys"] == 5000 and len(manifest["shards"]) == 3
    for shard in manifest["shards"]:
        path = stored / shard["file"]
        checked = subprocess.run(
            ["sha256sum", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        assert checked == shard["sha256"] and path.stat().st_size == shard["size"]

    done = redkube.ok(
        "restore", "--from", where, "--name", "more", "--shards", "5", "--server", server
    ).stdout
    assert "restored 5,000 keys of 5,000" in done, done
    target = LocalCluster("more", redkube.home / "more")
    redis_cli_check(target)
    assert master_keys(target) == 5000
    with target.cluster_client() as client:
        assert_same_data(before, dumps(client, keys))


def test_bad_credentials_a_missing_bucket_and_damaged_or_unfinished_backups_are_refused(
    redkube: Redkube, server: str, s3: S3Server
) -> None:
    redkube.env.update(s3.env())
    source = redkube.up_cluster("small", 1, 1, server)
    with source.cluster_client() as client:
        fill_every_type(client, 100)
    good = f"s3://{BUCKET}/small"
    redkube.ok("backup", "--name", "small", "--to", good)

    def refused(*args: str, why: str) -> None:
        done = redkube.run(*args)
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0], done.stderr
        assert "Traceback" not in done.stderr

    refused("backup", "--name", "small", "--to", good, why="already holds a backup")
    refused("backup", "--name", "small", "--to", "s3://no-such-bucket/x", why="does not exist")
    refused("restore", "--from", f"s3://{BUCKET}/nothing-here", "--name", "never",
            "--server", server, why="no complete backup")  # fmt: skip

    # A damaged object (one byte flipped, the size kept): found before anything is created.
    stored = s3.root / BUCKET / "small" / "shard-0.rdb"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    refused("restore", "--from", good, "--name", "never", "--server", server,
            why="does not match its checksum")  # fmt: skip

    redkube.env.update(s3.env(secret="wrong-secret-0123456789"))
    refused("backup", "--name", "small", "--to", f"s3://{BUCKET}/other", why="access denied")
    assert "never" not in redkube.ok("list").stdout  # nothing was created
