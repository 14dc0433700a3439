"""Moving hash slots, and their keys, between masters; and closing slots left open.

Two ways, one contract: when a call returns, the slots are with the target and every key with
them, or (on any error) every key is on the source or the target and the next observation finds
where things stand (an open slot is finished or rolled back by the loop; a failed atomic job
left the slots with the source).

- Atomic (Valkey 9+): ``CLUSTER MIGRATESLOTS`` on the source; the server moves the slots as one
  job, followed in ``CLUSTER GETSLOTMIGRATIONS``.
- Classic (Redis 7, Valkey before 9): ``SETSLOT IMPORTING`` on the target, ``MIGRATING`` on the
  source, then per slot ``GETKEYSINSLOT`` and ``MIGRATE ... KEYS`` (without REPLACE: a key already
  on the target is an error first, handled below), then ``SETSLOT NODE`` on the target, the source
  and the other masters, one target at a time, each target first knowing the cluster's highest
  config epoch (see ``_assign``). Every step is pipelined over all slots of the batch: Redis
  writes nodes.conf once per event loop turn, not once per slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from redis.exceptions import ResponseError

from redkube.admin.connections import AdminError, ClientPool, NodeClient
from redkube.admin.replies import parse_info
from redkube.model.actions import CloseSlots, MoveSlots, SlotMove, TellOwner
from redkube.model.addresses import Address
from redkube.model.slots import SlotRange

KEYS_PER_MIGRATE = 1000
MIGRATE_TIMEOUT_MS = 20000
ATOMIC_WAIT_S = 40.0
CLASSIC_MOVE_S = 60.0  # then per slot: a batch of 1024 slots (about 1 s here) gets 80 s
CLASSIC_MOVE_PER_SLOT_S = 0.02  # then the loop observes again (the job goes on; it waits for it)
POLL_S = 0.005
TERMINAL_STATES = frozenset({"success", "failed", "cancelled"})
KEYS_NAMED = 3  # in the Event about copies that differed
EPOCH_WAIT_S = 15.0  # for a target to hear of the highest config epoch (gossip, node timeout/2)
EPOCH_POLL_S = 0.02


@dataclass(frozen=True)
class Moved:
    """What a batch of moves did: keys moved, and what the user should hear about."""

    keys: int = 0
    notes: tuple[str, ...] = ()


async def move_slots(action: MoveSlots, masters: Sequence[Address], pool: ClientPool) -> Moved:
    """Run one batch of moves at once."""
    if not action.atomic:
        return await _move_classic(action.moves, masters, pool)
    results = await asyncio.gather(
        *(_move_atomic(m, masters, pool) for m in action.moves), return_exceptions=True
    )
    return _summed(results)


def _summed(results: Sequence[Moved | BaseException]) -> Moved:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        if not all(isinstance(e, Exception) for e in errors):
            raise errors[0]
        raise AdminError("; ".join(str(e) for e in errors))
    done = [r for r in results if isinstance(r, Moved)]
    return Moved(sum(r.keys for r in done), tuple(n for r in done for n in r.notes))


def _slots(ranges: Iterable[SlotRange]) -> list[int]:
    return [slot for r in ranges for slot in r.slots()]


def _raise_errors(address: Address, what: str, replies: list[object], allowed: str = "") -> None:
    for reply in replies:
        if isinstance(reply, ResponseError) and not (allowed and allowed in str(reply)):
            raise AdminError(f"{address}: {what}: {reply}")


async def _move_classic(
    moves: Sequence[SlotMove], masters: Sequence[Address], pool: ClientPool
) -> Moved:
    """A batch, bounded in time: a server that stalls (a MIGRATE waiting on its target) turns
    into an error the loop reports, and the next pass finishes or rolls back the open slots."""
    slots = sum(m.slots for m in moves)
    limit = CLASSIC_MOVE_S + CLASSIC_MOVE_PER_SLOT_S * slots + EPOCH_WAIT_S * len(moves)
    try:
        return await asyncio.wait_for(_move_classic_unbounded(moves, masters, pool), limit)
    except TimeoutError as error:
        raise AdminError(
            f"moving {slots} slots did not finish within {limit:.0f}s; the next pass finishes "
            "or rolls back the slots left open"
        ) from error


async def _move_classic_unbounded(
    moves: Sequence[SlotMove], masters: Sequence[Address], pool: ClientPool
) -> Moved:
    """The keys of every move at once; then the slots' owners, one target after the other,
    each target first knowing the highest config epoch in the cluster, so that taking the slots
    gives it a new highest epoch of its own (see ``_assign``)."""
    migrated = await asyncio.gather(*(_open_and_migrate(m, pool) for m in moves),
                                    return_exceptions=True)  # fmt: skip
    ready = [m for m, r in zip(moves, migrated, strict=True) if isinstance(r, Moved)]
    assigned: list[Moved | BaseException] = list(migrated)
    for target in dict.fromkeys(m.target for m in ready):
        try:
            await _assign([m for m in ready if m.target == target], masters, pool)
        except Exception as error:  # the others still get their owner; reported below
            assigned.append(error)
    return _summed(assigned)


async def _open_and_migrate(move: SlotMove, pool: ClientPool) -> Moved:
    source = pool.migration_client(move.source)
    target = pool.migration_client(move.target)
    slots = _slots(move.ranges)
    # The target may own a slot already (a move finished on it but not on the source).
    replies = await target.pipeline(
        ("CLUSTER", "SETSLOT", s, "IMPORTING", move.source_id) for s in slots
    )
    _raise_errors(move.target, "SETSLOT IMPORTING", replies, allowed="already the owner")
    replies = await source.pipeline(
        ("CLUSTER", "SETSLOT", s, "MIGRATING", move.target_id) for s in slots
    )
    _raise_errors(move.source, "SETSLOT MIGRATING", replies, allowed="not the owner")
    keys = pool.key_client(move.source), pool.key_client(move.target)
    return await _migrate_keys(*keys, slots, pool.migrate_auth())


async def _migrate_keys(
    source: NodeClient, target_client: NodeClient, slots: list[int], auth: tuple[str, ...]
) -> Moved:
    """MIGRATE every key of the slots to the target, in batches per slot, until none is left
    on the source (new keys of a migrating slot go to the target by ASK)."""
    moved = 0
    notes: list[str] = []
    target = target_client.address
    pending = list(slots)
    previous: list[object] = []
    while pending:
        listed = await source.pipeline(
            ("CLUSTER", "GETKEYSINSLOT", s, KEYS_PER_MIGRATE) for s in pending
        )
        _raise_errors(source.address, "GETKEYSINSLOT", listed)
        batches = [(s, keys) for s, keys in zip(pending, listed, strict=True) if keys]
        if not batches:
            return Moved(moved, tuple(notes))
        if listed == previous:
            raise AdminError(
                f"{source.address}: the same keys are listed again after they were moved to "
                f"{target}; the slot stays open"
            )
        previous = listed
        calls = [
            ("MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS, *auth, "KEYS", *keys)
            for _, keys in batches
            if isinstance(keys, list)
        ]
        replies = await source.pipeline(calls)
        for (slot, keys), reply in zip(batches, replies, strict=True):
            if isinstance(reply, ResponseError) and "BUSYKEY" in str(reply):
                # MIGRATE moved the others; what is left on the source is held by both.
                replaced, note = await _replace_copies(source, target_client, slot, auth)
                moved += replaced
                notes += [note]
            elif isinstance(reply, ResponseError):
                raise AdminError(f"{source.address}: MIGRATE slot {slot} to {target}: {reply}")
            else:
                moved += len(keys) if isinstance(keys, list) else 0
        pending = [s for s, _ in batches]
    return Moved(moved, tuple(notes))


async def _replace_copies(
    source: NodeClient, target: NodeClient, slot: int, auth: tuple[str, ...]
) -> tuple[int, str]:
    """The keys of the slot that both hold: the source's copy replaces the target's (see the
    module's text); the number replaced, and what to tell the user."""
    listed = await source.command("CLUSTER", "GETKEYSINSLOT", slot, KEYS_PER_MIGRATE)
    keys = [k for k in listed if isinstance(k, bytes)] if isinstance(listed, list) else []
    ours = await source.pipeline(("DUMP", k) for k in keys)
    _raise_errors(source.address, f"DUMP slot {slot}", ours)
    # The target imports the slot: it answers for one of its keys only right after ASKING.
    theirs = (await target.pipeline(c for k in keys for c in (("ASKING",), ("DUMP", k))))[1::2]
    _raise_errors(target.address, f"DUMP slot {slot}", theirs)
    both = [k for k, t in zip(keys, theirs, strict=True) if t is not None]
    differing = [k for k, o, t in zip(keys, ours, theirs, strict=True) if t is not None and o != t]
    if both:
        host, port = target.address.host, target.address.port
        reply = await source.pipeline(
            [("MIGRATE", host, port, "", 0, MIGRATE_TIMEOUT_MS, "REPLACE", *auth, "KEYS", *both)]
        )
        _raise_errors(source.address, f"MIGRATE REPLACE slot {slot}", reply)
    note = (
        f"slot {slot}: {len(both)} key(s) were on both {source.address} and {target.address} "
        "(the source came back with copies it had moved: a failover or a restart during the "
        "move); kept the source's copies, which clients were served from since"
    )
    if differing:
        names = [k.decode(errors="backslashreplace") for k in differing[:KEYS_NAMED]]
        named = ", ".join(names) + (", ..." if len(differing) > KEYS_NAMED else "")
        note += f"; {len(differing)} differed from the target's, which were dropped: {named}"
    return len(both), note


async def _assign(moves: Sequence[SlotMove], masters: Sequence[Address], pool: ClientPool) -> None:
    """The slots of ``moves`` (all into one target) to their target: SETSLOT NODE on the target
    first (it owns them, and takes a new epoch), then at once each source (which refuses while
    it still holds a key) and every other master (a hint; gossip settles them anyway, so their
    errors do not count).

    Before that, the target must know the highest config epoch any master has: SETSLOT NODE
    gives it its current epoch + 1, the highest of all, only then. Were it lower than a source's
    (a source that took a new epoch meanwhile, the target not yet told), the source's gossip
    would win the slots back and the target would drop the keys it just received: Redis deletes
    the keys of a slot it loses to a newer epoch."""
    target = moves[0].target
    await _knows_highest_epoch(target, masters, pool)

    def assign(address: Address, move: SlotMove) -> Awaitable[list[object]]:
        return pool.migration_client(address).pipeline(
            ("CLUSTER", "SETSLOT", s, "NODE", move.target_id) for s in _slots(move.ranges)
        )

    for move in moves:
        _raise_errors(target, "SETSLOT NODE", await assign(target, move))
    for move in moves:
        others = [a for a in masters if a not in (move.source, move.target)]
        replies, *_ = await asyncio.gather(
            assign(move.source, move), *(assign(a, move) for a in others), return_exceptions=True
        )
        if isinstance(replies, BaseException):
            raise replies
        _raise_errors(move.source, "SETSLOT NODE", replies)


async def _epochs(address: Address, pool: ClientPool) -> tuple[int, int]:
    """A node's (config epoch, current epoch), from CLUSTER INFO."""
    info = parse_info(await pool.migration_client(address).text("CLUSTER", "INFO"))
    return int(info.get("cluster_my_epoch", 0)), int(info.get("cluster_current_epoch", 0))


async def _knows_highest_epoch(
    target: Address, masters: Sequence[Address], pool: ClientPool
) -> None:
    """Until the target's current epoch reaches every master's config epoch (gossip brings it;
    bounded by EPOCH_WAIT_S)."""
    deadline = time.monotonic() + EPOCH_WAIT_S
    highest = max([(await _epochs(a, pool))[0] for a in masters if a != target], default=0)
    while (await _epochs(target, pool))[1] < highest:
        if time.monotonic() > deadline:
            raise AdminError(
                f"{target} did not learn the cluster's highest config epoch ({highest}) within "
                f"{EPOCH_WAIT_S:.0f}s; its slots stay open and the next pass goes on"
            )
        await asyncio.sleep(EPOCH_POLL_S)


async def _move_atomic(move: SlotMove, masters: Sequence[Address], pool: ClientPool) -> Moved:
    source = pool.migration_client(move.source)
    slots = _slots(move.ranges)
    counts = await source.pipeline(("CLUSTER", "COUNTKEYSINSLOT", s) for s in slots)
    keys = sum(c for c in counts if isinstance(c, int))
    bounds = [str(bound) for r in move.ranges for bound in (r.start, r.end)]
    started = time.time()
    await source.command(
        "CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", *bounds, "NODE", move.target_id, attempts=1
    )
    wanted = set(slots)
    deadline = time.monotonic() + ATOMIC_WAIT_S
    while time.monotonic() < deadline:
        job = _latest_job(await slot_migrations(source), move.target_id, wanted, started)
        if job is not None and job.get("state") in TERMINAL_STATES:
            if job.get("state") != "success":
                raise AdminError(
                    f"{move.source}: slot migration to {move.target} {job.get('state')}: "
                    f"{job.get('message') or 'no reason given'}; the slots stay with the source"
                )
            return Moved(keys)
        await asyncio.sleep(POLL_S)
    return Moved(keys)  # still running: the loop sees the job and waits for it


def _latest_job(
    jobs: list[Mapping[str, object]], target_id: str, slots: set[int], since: float
) -> Mapping[str, object] | None:
    """The export job this move started: same target and slots, created at or after it."""
    found = [
        job
        for job in jobs
        if job.get("operation") == "EXPORT"
        and job.get("target_node") == target_id
        and parse_job_slots(str(job.get("slot_ranges", ""))) == slots
        and _number(job.get("create_time")) >= int(since) - 1
    ]
    return max(found, key=lambda job: _number(job.get("create_time")), default=None)


def _number(value: object) -> int:
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0


def parse_job_slots(text: str) -> set[int]:
    """``"3000-3999 4500"`` -> the slots."""
    slots: set[int] = set()
    for token in text.split():
        start, _, end = token.partition("-")
        slots.update(range(int(start), int(end or start) + 1))
    return slots


async def slot_migrations(client: NodeClient) -> list[Mapping[str, object]]:
    """CLUSTER GETSLOTMIGRATIONS as one mapping per job (RESP2 gives flat lists, RESP3 maps)."""
    reply = await client.command("CLUSTER", "GETSLOTMIGRATIONS", attempts=1)
    jobs: list[Mapping[str, object]] = []
    for entry in reply if isinstance(reply, list) else []:
        if isinstance(entry, dict):
            jobs.append({str(k): v for k, v in entry.items()})
        elif isinstance(entry, list):
            jobs.append({str(k): v for k, v in zip(entry[::2], entry[1::2], strict=False)})
    return jobs


def running_jobs(jobs: Iterable[Mapping[str, object]]) -> tuple[str, ...]:
    """Jobs not finished yet, as texts for the status."""
    return tuple(
        f"{job.get('operation', '?')} {job.get('slot_ranges', '?')} "
        f"({str(job.get('source_node', '?'))[:8]} -> {str(job.get('target_node', '?'))[:8]}, "
        f"{job.get('state', '?')})"
        for job in jobs
        if job.get("state") not in TERMINAL_STATES
    )


async def close_slots(action: CloseSlots, pool: ClientPool) -> None:
    """STABLE on the owner first, so no client is sent (ASK) to the others any more; then on each
    other node whose count of keys in the slot is still zero. A node that got a key meanwhile
    keeps its slot open: the next pass finishes that move instead."""
    owner = pool.client(action.owner)
    _raise_errors(
        action.owner,
        "SETSLOT STABLE",
        await owner.pipeline(("CLUSTER", "SETSLOT", s, "STABLE") for s in action.slots),
    )
    for address in action.others:
        client = pool.client(address)
        counts = await client.pipeline(("CLUSTER", "COUNTKEYSINSLOT", s) for s in action.slots)
        empty = [s for s, c in zip(action.slots, counts, strict=True) if c == 0]
        replies = await client.pipeline(("CLUSTER", "SETSLOT", s, "STABLE") for s in empty)
        _raise_errors(address, "SETSLOT STABLE", replies)


async def tell_owner(action: TellOwner, pool: ClientPool) -> None:
    """SETSLOT NODE: the node takes the owner the cluster agrees on; its import stays open."""
    replies = await pool.client(action.address).pipeline(
        ("CLUSTER", "SETSLOT", s, "NODE", action.owner_id) for s in action.slots
    )
    _raise_errors(action.address, "SETSLOT NODE", replies)
