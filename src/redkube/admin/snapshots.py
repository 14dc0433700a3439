"""Snapshots on a node (BGSAVE, waited for), and keys moved out of a loaded snapshot into a
cluster (SCAN, then MIGRATE to each slot's owner, TTLs kept)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from redkube.admin.connections import AdminError, NodeClient
from redkube.admin.replies import parse_info
from redkube.model.addresses import Address
from redkube.model.slots import key_slot

SAVE_POLL_S = 0.05
SCAN_COUNT = 1000
MIGRATE_TIMEOUT_MS = 60000


async def rdb_path(client: NodeClient) -> Path:
    """Where the node writes its snapshot (CONFIG GET dir and dbfilename)."""
    reply = await client.command("CONFIG", "GET", "dir")
    folder = config_value(reply, "dir")
    reply = await client.command("CONFIG", "GET", "dbfilename")
    return Path(folder) / config_value(reply, "dbfilename")


def config_value(reply: object, key: str) -> str:
    """The value of a one-parameter CONFIG GET reply (a RESP2 pair or a RESP3 map)."""
    if isinstance(reply, dict):
        return str(reply[key])
    if isinstance(reply, list | tuple) and len(reply) == 2:
        return str(reply[1])
    raise AdminError(f"CONFIG GET {key}: unexpected reply {reply!r}")


async def saves_done(client: NodeClient) -> tuple[int, bool, Mapping[str, str]]:
    """INFO persistence: how many RDB saves the node has made (rdb_saves, else LASTSAVE),
    whether one runs now, and the section itself."""
    info = parse_info(await client.text("INFO", "persistence"))
    count = info.get("rdb_saves")
    done = int(count) if count is not None else int(str(await client.command("LASTSAVE")))
    return done, info.get("rdb_bgsave_in_progress") == "1", info


async def start_save(client: NodeClient) -> int:
    """BGSAVE now (the fork fixes the snapshot's content at once); returns the save count
    before it. A save already running (a replica's sync) is an error: the caller retries."""
    before, _, _ = await saves_done(client)
    await client.command("BGSAVE", attempts=1)
    return before


async def finish_save(client: NodeClient, before: int, timeout_s: float) -> None:
    """Until the save started after ``before`` ended, and ended well."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, running, info = await saves_done(client)
        if done > before and not running:
            break
        if time.monotonic() > deadline:
            raise AdminError(f"{client.address}: BGSAVE did not end within {timeout_s:.0f}s")
        await asyncio.sleep(SAVE_POLL_S)
    if info.get("rdb_last_bgsave_status") != "ok":
        raise AdminError(f"{client.address}: BGSAVE failed (see the node's log)")


async def move_all_keys(
    source: NodeClient,
    owner_of: Callable[[int], Address],
    auth: tuple[str, ...],
    moved: Callable[[int], None],
    keep_existing: bool = False,
) -> int:
    """Every key of ``source`` (a scratch server holding a snapshot) MIGRATEd, in batches, to the
    node that owns its slot (``owner_of(slot)``; ``auth``: MIGRATE's, see
    ``connections.migrate_auth``): TTLs kept, never REPLACE. A key already there
    is an error, unless ``keep_existing`` (a snapshot moved again after an interrupted move):
    then the key there stays as it is (it came from this snapshot, or a client has written it
    since, which is newer) and the source's copy is dropped. ``moved`` hears each batch's count;
    returns the total (keys kept counted as in)."""
    total = 0
    cursor = 0
    while True:
        reply = await source.command("SCAN", cursor, "COUNT", SCAN_COUNT)
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise AdminError(f"{source.address}: SCAN: unexpected reply {reply!r}")
        cursor, keys = int(reply[0]), list(reply[1])
        batches: dict[Address, list[bytes]] = defaultdict(list)
        for key in keys:
            batches[owner_of(key_slot(key))].append(key)
        for target, batch in batches.items():
            total += await _migrate(source, target, auth, batch, keep_existing)
        if keys:
            moved(total)
        if cursor == 0:
            return total


BUSY = "BUSYKEY"  # the target holds the key already (MIGRATE without REPLACE)


async def _migrate(
    source: NodeClient,
    target: Address,
    auth: tuple[str, ...],
    keys: list[bytes],
    keep_existing: bool,
) -> int:
    """The batch moved: how many of its keys are in the target now (not those that expired)."""
    text = await _migrate_once(source, target, auth, keys)
    if text == "NOKEY":  # every key of the batch expired meanwhile
        return 0
    if text == "OK":
        return len(keys)
    if not (keep_existing and BUSY in text):
        raise AdminError(f"{source.address}: MIGRATE to {target}: {text}")
    # MIGRATE went on past the busy keys, dropping from the source every key it moved: what
    # is left goes one by one (NOKEY: moved already), each busy one kept where it is. All
    # count as in (one that expired meanwhile too: which did is not known here).
    for key in keys:
        text = await _migrate_once(source, target, auth, [key])
        if BUSY in text:
            await source.command("DEL", key)
        elif text not in ("OK", "NOKEY"):
            raise AdminError(f"{source.address}: MIGRATE to {target}: {text}")
    return len(keys)


async def _migrate_once(
    source: NodeClient, target: Address, auth: tuple[str, ...], keys: list[bytes]
) -> str:
    """MIGRATE's reply as text (an error reply too: the caller judges it)."""
    try:
        reply = await source.command(
            "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS, *auth,
            "KEYS", *keys, attempts=1,
        )  # fmt: skip
    except AdminError as error:
        return str(error)
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def owners(slots_by_address: Mapping[Address, frozenset[int]]) -> Callable[[int], Address]:
    """The owner of each slot, from each master's slots; a slot nobody serves is an error."""
    table: dict[int, Address] = {}
    for address, slots in slots_by_address.items():
        for slot in slots:
            table[slot] = address

    def owner_of(slot: int) -> Address:
        found = table.get(slot)
        if found is None:
            raise AdminError(f"slot {slot} has no master in the target cluster")
        return found

    return owner_of
