"""`redkube backup --to s3://...` and `redkube restore --from s3://...` against a real
S3-compatible server (the Versity gateway, built from its Go module by
scripts/build-versitygw.sh, its posix backend in a directory of the test's): every key of every
type back in a cluster of another shard count (DUMP compared); the objects checked where the
server keeps them, with sha256sum; wrong credentials, a missing bucket, a damaged object and an
unfinished backup each refused with one line, nothing created."""

from __future__ import annotations

import json
import subprocess

from tests.backups.test_local_backups import master_keys
from tests.checks import redis_cli_check
from tests.clusters import LocalCluster, Redkube
from tests.datasets import assert_same_data, dumps, fill_every_type
from tests.s3server import BUCKET, S3Server


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
