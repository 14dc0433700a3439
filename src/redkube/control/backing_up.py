"""Backups of a running cluster: per shard a snapshot from an in-sync replica (so the masters
keep serving), kept in the store (a directory or S3-compatible object storage); the manifest
last.

Two ways to take the snapshots: `back_up` (local clusters) has each node BGSAVE and copies the
file, then loads the copy in a scratch server to check it and count its keys; `back_up_streamed`
(Kubernetes, where the operator cannot read a Pod's files) receives each snapshot over the
network as a replica would (SYNC), all shards at once, and counts the keys the file declares.

Each shard's snapshot is its own point in time. With ``consistent``, writes pause on every
master (CLIENT PAUSE WRITE) until each source replica has all its master wrote and its snapshot
forked (its BGSAVE; or, streamed, the fork its SYNC started, seen in INFO's ``total_forks``):
one point in time across shards, for the cost of that pause (reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redkube.admin.connections import AdminError, ClientPool, NodeClient
from redkube.admin.rdb_streaming import stream_snapshot
from redkube.admin.replies import parse_info
from redkube.admin.snapshots import config_value, finish_save, rdb_path, start_save
from redkube.model.backups import (
    MANIFEST,
    BackupError,
    BackupManifest,
    NotNow,
    ShardSnapshot,
)
from redkube.model.observations import Observation
from redkube.model.specs import ClusterSpec
from redkube.planning.snapshots import SnapshotSource, snapshot_sources
from redkube.platform.local.scratch import ScratchServer
from redkube.platform.stores import Store

SAVE_TIMEOUT_S = 600.0
LOAD_TIMEOUT_S = 600.0
PAUSE_MS = 10000  # the longest writes may stay paused (CLIENT PAUSE's own timeout)
DISKLESS_DELAY = "repl-diskless-sync-delay"
CATCH_UP_TIMEOUT_S = 5.0  # then up to PAUSE_MS / 4 for the forks: all well within the pause


async def back_up(
    spec: ClusterSpec,
    server: str,
    binary: str,
    observation: Observation,
    pool: ClientPool,
    store: Store,
    work: Path,
    consistent: bool,
    progress: Callable[[str], None],
) -> BackupManifest:
    """``work``: a local directory for each snapshot's copy while it is checked and stored."""
    store.check()
    if store.size(MANIFEST) is not None:
        raise BackupError(f"{store.location} already holds a backup; choose another place")
    sources = snapshot_sources(spec, observation)
    started = time.time()
    paused_ms = 0.0
    begun: dict[int, tuple[int, float]] = {}  # shard -> (saves before its BGSAVE, when)
    if consistent:
        progress("pausing writes on every master while the snapshots begin")
        begun, paused_ms = await _begin_all_paused(sources, pool)
    snapshots = []
    for source in sources:
        client = pool.migration_client(source.view.address)
        if source.shard not in begun:
            begun[source.shard] = (await _start(client), time.time())
        before, at = begun[source.shard]
        progress(f"shard {source.shard}: snapshot on {source.node} ({source.role})")
        await finish_save(client, before, SAVE_TIMEOUT_S)
        snapshots.append(await _keep(source, client, store, work, binary, at, progress))
    manifest = BackupManifest(
        spec.name, server, tuple(snapshots), started, time.time(), consistent, paused_ms
    )
    store.write_text(MANIFEST, json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


async def back_up_streamed(
    spec: ClusterSpec,
    server: str,
    observation: Observation,
    pool: ClientPool,
    store: Store,
    work: Path,
    progress: Callable[[str], None],
    stored: Callable[[int, int], None],
    consistent: bool = False,
) -> BackupManifest:
    """``stored(done, of)`` hears each shard kept. The store's calls (blocking) run in threads,
    so that the caller's event loop (the operator's) keeps serving meanwhile."""
    await asyncio.to_thread(store.check)
    if await asyncio.to_thread(store.size, MANIFEST) is not None:
        raise BackupError(f"{store.location} already holds a backup; choose another place")
    sources = snapshot_sources(spec, observation)
    started = time.time()
    done = 0
    forks_before: dict[int, int] = {}  # consistent: each source's forks before its SYNC

    async def one(source: SnapshotSource) -> ShardSnapshot:
        nonlocal done
        name = f"shard-{source.shard}.rdb"
        local = work / name
        at = time.time()
        progress(f"shard {source.shard}: receiving a snapshot from {source.node} ({source.role})")
        address = source.view.address
        try:
            streamed = await stream_snapshot(
                address.host, address.port, pool.password, local, SAVE_TIMEOUT_S
            )
            keys = streamed.keys
            if keys is None:  # a file the header walk does not know: the node's count then
                keys = int(str(await pool.client(address).command("DBSIZE")))
            progress(f"shard {source.shard}: storing {streamed.size:,} bytes in {store.location}")
            await asyncio.to_thread(store.put, name, local)
        finally:
            local.unlink(missing_ok=True)
        done += 1
        stored(done, len(sources))
        return ShardSnapshot(
            shard=source.shard, slots=source.slots, file=name, keys=keys, size=streamed.size,
            sha256=streamed.sha256, node=source.node, role=source.role, started=at,
            ended=time.time(),
        )  # fmt: skip

    paused_ms = 0.0
    if consistent:
        progress("pausing writes on every master until each snapshot has forked")
        async with _writes_paused(sources, pool) as paused:
            for source in sources:
                forks_before[source.shard] = await _forks(pool.client(source.view.address))
            streams = [asyncio.create_task(one(source)) for source in sources]
            try:
                await _until_forked(sources, pool, forks_before, streams)
            except BaseException:
                for stream in streams:
                    stream.cancel()
                await asyncio.gather(*streams, return_exceptions=True)
                raise
        paused_ms = paused.milliseconds
        snapshots = await asyncio.gather(*streams)
    else:
        snapshots = await asyncio.gather(*(one(source) for source in sources))
    manifest = BackupManifest(
        spec.name, server, tuple(snapshots), started, time.time(), consistent, paused_ms
    )
    text = json.dumps(manifest.to_json(), indent=2) + "\n"
    await asyncio.to_thread(store.write_text, MANIFEST, text)
    return manifest


async def _start(client: NodeClient) -> int:
    """BGSAVE, once the node's own save (a replica's sync, say) has ended."""
    deadline = time.monotonic() + SAVE_TIMEOUT_S
    while True:
        try:
            return await start_save(client)
        except AdminError as error:
            if "in progress" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _begin_all_paused(
    sources: tuple[SnapshotSource, ...], pool: ClientPool
) -> tuple[dict[int, tuple[int, float]], float]:
    """Each source's BGSAVE forked while writes were paused: (saves before it, when) by shard,
    and how long the pause lasted in ms."""
    begun = {}
    async with _writes_paused(sources, pool) as paused:
        for source in sources:
            client = pool.migration_client(source.view.address)
            begun[source.shard] = (await start_save(client), time.time())
    return begun, paused.milliseconds


@dataclass
class _Pause:
    """How long writes were paused, once they are not any more."""

    milliseconds: float = 0.0


@contextlib.asynccontextmanager
async def _writes_paused(
    sources: tuple[SnapshotSource, ...], pool: ClientPool
) -> AsyncIterator[_Pause]:
    """Writes paused on every master, each source replica caught up with its master, and each
    source's diskless-sync delay at 0 (a SYNC forks at once, not seconds later) until the block
    ends; then all as it was. PAUSE_MS bounds the pause should this process die meanwhile."""
    pause = _Pause()
    masters = [pool.client(s.master.address) for s in sources]
    delays: dict[NodeClient, str] = {}
    began = time.monotonic()
    try:
        for master in masters:
            await master.command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        for source, master in zip(sources, masters, strict=True):
            client = pool.client(source.view.address)
            if source.view is not source.master:
                await _caught_up(client, master)
            reply = await client.command("CONFIG", "GET", DISKLESS_DELAY)
            delays[client] = config_value(reply, DISKLESS_DELAY)
            await client.command("CONFIG", "SET", DISKLESS_DELAY, "0")
        yield pause
    finally:
        for master in masters:
            with contextlib.suppress(AdminError):  # else its pause ends by itself (PAUSE_MS)
                await master.command("CLIENT", "UNPAUSE")
        pause.milliseconds = (time.monotonic() - began) * 1000
        for client, delay in delays.items():
            with contextlib.suppress(AdminError):  # a delay left at 0 only syncs sooner
                await client.command("CONFIG", "SET", DISKLESS_DELAY, delay)


async def _forks(client: NodeClient) -> int:
    """The forks the node made since it started (INFO stats ``total_forks``)."""
    forks = parse_info(await client.text("INFO", "stats")).get("total_forks")
    if forks is None:
        raise BackupError(f"{client.address} does not report total_forks (INFO stats)")
    return int(forks)


async def _until_forked(
    sources: tuple[SnapshotSource, ...],
    pool: ClientPool,
    before: dict[int, int],
    streams: list[asyncio.Task[ShardSnapshot]],
) -> None:
    """Until each source forked since ``before`` (its SYNC's snapshot; nothing else forks while
    writes are paused), within the pause. A stream that failed meanwhile raises its error."""
    waiting = list(sources)

    async def forked() -> bool:
        nonlocal waiting
        for stream in streams:
            if stream.done():
                stream.result()  # raises what the stream raised; a finished one has forked
        waiting = [
            s for s in waiting if await _forks(pool.client(s.view.address)) <= before[s.shard]
        ]
        return not waiting

    await _while_paused(
        forked, PAUSE_MS / 4000, lambda: f"shard {waiting[0].shard}: its snapshot did not begin"
    )


async def _caught_up(replica: NodeClient, master: NodeClient) -> None:
    """Until the replica has every byte its (paused) master wrote."""
    wanted = int(parse_info(await master.text("INFO", "replication"))["master_repl_offset"])

    async def there() -> bool:
        info = parse_info(await replica.text("INFO", "replication"))
        return int(info.get("slave_repl_offset", "-1")) >= wanted

    await _while_paused(
        there, CATCH_UP_TIMEOUT_S, lambda: f"{replica.address} did not catch up with its master"
    )


async def _while_paused(
    done: Callable[[], Awaitable[bool]], seconds: float, failure: Callable[[], str]
) -> None:
    """Poll ``done`` until it holds; NotNow (a later try may succeed) if it does not within
    ``seconds``, which must end well before the pause does."""
    deadline = time.monotonic() + seconds
    while not await done():
        if time.monotonic() > deadline:
            raise NotNow(f"{failure()} within {seconds:.0f}s while writes were paused; try again")
        await asyncio.sleep(0.005)


async def _keep(
    source: SnapshotSource,
    client: NodeClient,
    store: Store,
    work: Path,
    binary: str,
    started: float,
    progress: Callable[[str], None],
) -> ShardSnapshot:
    """Copy the node's snapshot aside (the node may write a new one meanwhile), load the copy in
    a scratch server to check it and count its keys, then keep it in the store."""
    name = f"shard-{source.shard}.rdb"
    local = work / name
    shutil.copyfile(await rdb_path(client), local)
    os.chmod(local, 0o600)  # the data itself: for its owner only
    try:
        digest = _sha256(local)
        size = local.stat().st_size
        progress(f"shard {source.shard}: checking the snapshot in a scratch server")
        keys = await count_keys(binary, local)
        progress(f"shard {source.shard}: storing {size:,} bytes in {store.location}")
        store.put(name, local)
    finally:
        local.unlink(missing_ok=True)
    return ShardSnapshot(
        shard=source.shard,
        slots=source.slots,
        file=name,
        keys=keys,
        size=size,
        sha256=digest,
        node=source.node,
        role=source.role,
        started=started,
        ended=time.time(),
    )


async def count_keys(binary: str, snapshot: Path) -> int:
    scratch = ScratchServer(binary, snapshot)
    try:
        await scratch.start()
        return await loaded(scratch)
    finally:
        await scratch.stop()


async def loaded(scratch: ScratchServer) -> int:
    """Until the scratch server answers with its snapshot loaded (its own error if it died);
    returns how many keys it holds."""
    client = NodeClient(scratch.address, None, timeout=LOAD_TIMEOUT_S)
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    try:
        while True:
            if (why := scratch.exited()) is not None:
                raise BackupError(f"the snapshot {scratch.snapshot.name} does not load: {why}")
            try:
                info = parse_info(await client.text("INFO", "persistence", attempts=1))
                if info.get("loading") == "0":
                    return int(str(await client.command("DBSIZE")))
            except AdminError:
                pass  # not listening yet, or LOADING
            if time.monotonic() > deadline:
                raise BackupError(f"the snapshot {scratch.snapshot.name} did not load in time")
            await asyncio.sleep(0.05)
    finally:
        await client.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(store: Store) -> BackupManifest:
    """The manifest of a complete backup whose files are all there, at their size."""
    text = store.read_text(MANIFEST)
    if text is None:
        raise BackupError(
            f"{store.location} holds no complete backup (no {MANIFEST}: the backup did not finish)"
        )
    try:
        manifest = BackupManifest.from_json(json.loads(text))
    except ValueError as error:
        raise BackupError(f"the {MANIFEST} of {store.location} is not valid ({error})") from error
    for snapshot in manifest.shards:
        size = store.size(snapshot.file)
        if size is None:
            raise BackupError(f"{snapshot.file} is missing: the backup is incomplete")
        if size != snapshot.size:
            raise BackupError(f"{snapshot.file} does not match its size: the backup is damaged")
    return manifest


def fetch_snapshots(
    store: Store, manifest: BackupManifest, work: Path, progress: Callable[[str], None]
) -> None:
    """Every snapshot of the backup into ``work``, each checked against its sha256."""
    for snapshot in manifest.shards:
        local = work / snapshot.file
        progress(f"fetching {snapshot.file} ({snapshot.size:,} bytes) from {store.location}")
        store.fetch(snapshot.file, local)
        if local.stat().st_size != snapshot.size or _sha256(local) != snapshot.sha256:
            raise BackupError(f"{snapshot.file} does not match its checksum: the backup is damaged")
