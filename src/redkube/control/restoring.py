"""Restores into a running cluster of any shard count: each snapshot is loaded by a scratch
server, and its keys are moved by slot into the cluster's masters (MIGRATE, TTLs kept, nothing
overwritten)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redkube.admin.connections import ClientPool, NodeClient
from redkube.admin.snapshots import move_all_keys, owners
from redkube.control.backing_up import LOAD_TIMEOUT_S, loaded
from redkube.model.addresses import Address
from redkube.model.backups import BackupError, BackupManifest
from redkube.model.observations import Observation
from redkube.model.slots import ALL_SLOTS
from redkube.platform.local.scratch import ScratchServer


def slot_owners(target: Observation) -> Callable[[int], Address]:
    """Each slot's master in the cluster ``target`` observes; every slot must be served."""
    masters = {
        view.address: view.myself.slots
        for view in target.views()
        if view.myself.is_master and view.myself.slots
    }
    served = frozenset().union(*masters.values()) if masters else frozenset()
    if served != ALL_SLOTS:
        raise BackupError(
            "the target cluster does not serve every slot yet; wait until it is Ready"
        )
    return owners(masters)


async def restore(
    manifest: BackupManifest,
    directory: Path,
    binary: str,
    target: Observation,
    pool: ClientPool,
    progress: Callable[[str], None],
) -> int:
    """Every key of the backup into the cluster ``target`` observes (empty, all slots served);
    returns how many keys moved (fewer than the manifest's count by the keys that expired)."""
    owner_of = slot_owners(target)
    if any(view.keys for view in target.views()):
        raise BackupError("the target cluster holds keys already; restore into an empty cluster")
    total = 0
    for number, snapshot in enumerate(manifest.shards, start=1):
        scratch = ScratchServer(binary, directory / snapshot.file)
        client = NodeClient(scratch.address, None, timeout=LOAD_TIMEOUT_S, decode=False)
        label = f"snapshot {number}/{len(manifest.shards)} (shard {snapshot.shard})"
        try:
            await scratch.start()
            progress(f"{label}: loading")
            await loaded(scratch)
            done = total

            def moved(
                count: int, label: str = label, done: int = done, of: int = snapshot.keys
            ) -> None:
                progress(f"{label}: {count:,} of {of:,} keys; {done + count:,} in all")

            total += await move_all_keys(client, owner_of, pool.migrate_auth(), moved)
        finally:
            await client.close()
            await scratch.stop()
    return total
