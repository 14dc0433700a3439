"""Executing Redis actions. Each is idempotent: running it twice leaves the same cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.handing_over import hand_over
from redkube.admin.migrating import Moved, close_slots, move_slots, tell_owner
from redkube.admin.replies import parse_cluster_nodes
from redkube.model.actions import (
    AddSlots,
    CloseSlots,
    Failover,
    FailoverMode,
    Forget,
    Meet,
    MoveSlots,
    Replicate,
    Reset,
    SetConfig,
    SetConfigEpochs,
    TellOwner,
)
from redkube.model.addresses import Address

RedisAction = (
    SetConfigEpochs
    | AddSlots
    | Meet
    | Replicate
    | Failover
    | Forget
    | Reset
    | MoveSlots
    | CloseSlots
    | TellOwner
    | SetConfig
)

CONFIRM_TIMEOUT_S = 3.0
# A graceful failover may take the server's own manual-failover timeout (5 s in Redis and Valkey)
# to finish; confirming for less would let the next pass ask again while it is still in flight.
GRACEFUL_CONFIRM_TIMEOUT_S = 6.0
POLL_INTERVAL_S = 0.01


async def execute(action: RedisAction, pool: ClientPool) -> Moved:
    """Carry the action out; the keys it moved (resharding), else none."""
    match action:
        case MoveSlots():
            return await move_slots(action, action.masters, pool)
        case CloseSlots():
            await close_slots(action, pool)
        case TellOwner():
            await tell_owner(action, pool)
        case SetConfigEpochs(epochs):
            await _all(pool.client(a).cluster_set_config_epoch(e) for a, e in epochs)
        case AddSlots(assignments):
            await _all(pool.client(a).cluster_addslotsrange(r) for a, r in assignments)
        case Meet(pairs):
            await _all(pool.client(source).cluster_meet(target) for source, target in pairs)
            await _await_handshakes({source for source, _ in pairs}, pool)
        case Replicate(assignments):
            await _all(pool.client(a).cluster_replicate(m) for a, m in assignments)
        case Failover(replica, mode, _reason, certain):
            try:
                if mode is FailoverMode.DEFAULT:
                    await hand_over(replica, pool, lambda: _fail_over(replica, mode, pool))
                else:
                    await _fail_over(replica, mode, pool)
            except AdminError:
                if not (certain and mode is FailoverMode.FORCE):
                    raise
                # The election could not finish (a freshly restarted replica may not have its
                # cluster links yet); the master is certainly dead, so take over without one.
                await _fail_over(replica, FailoverMode.TAKEOVER, pool)
        case Forget(node_id, on):
            await _all(_forget(pool, address, node_id) for address in on)
        case SetConfig(assignments):
            await _all(pool.client(a).config_set(key, value) for a, key, value in assignments)
        case Reset(address, _reason):
            await pool.client(address).cluster_reset(hard=False)
    return Moved()


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        if not all(isinstance(e, Exception) for e in errors):
            raise errors[0]
        raise AdminError(_summary([str(e) for e in errors]))


def _summary(messages: list[str]) -> str:
    """One line per distinct error: `<node>: <error>` said once, with how many more nodes
    said the same."""
    by_text: dict[str, list[str]] = {}
    for message in messages:
        node, _, text = message.partition(": ")
        by_text.setdefault(text or node, []).append(node)
    return "; ".join(
        f"{nodes[0]}: {text}" + (f" (and {len(nodes) - 1} more nodes)" if len(nodes) > 1 else "")
        for text, nodes in by_text.items()
    )


async def _forget(pool: ClientPool, address: Address, node_id: str) -> None:
    try:
        await pool.client(address).cluster_forget(node_id)
    except AdminError as error:
        if "unknown node" not in str(error).lower():
            raise


async def _await_handshakes(sources: set[Address], pool: ClientPool) -> None:
    """MEET only starts a handshake; wait (bounded) until none is pending on the sources."""
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S
    pending = set(sources)
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
        for address in list(pending):
            text = await pool.client(address).text("CLUSTER", "NODES")
            if not any(e.in_handshake for e in parse_cluster_nodes(text)):
                pending.discard(address)


async def _fail_over(replica: Address, mode: FailoverMode, pool: ClientPool) -> None:
    """Ask the replica to take over, then confirm it did: CLUSTER FAILOVER only starts it."""
    client = pool.client(replica)
    await client.cluster_failover(None if mode is FailoverMode.DEFAULT else mode.value)
    wait = GRACEFUL_CONFIRM_TIMEOUT_S if mode is FailoverMode.DEFAULT else CONFIRM_TIMEOUT_S
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if await client.role() == "master":
            return
        await asyncio.sleep(POLL_INTERVAL_S)
    raise AdminError(f"{replica}: failover ({mode.value}) did not complete in {wait}s")
