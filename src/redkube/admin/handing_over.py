"""A graceful failover that no client sees as an error.

CLUSTER FAILOVER alone turns the master into a replica while some clients may still wait in WAIT
for its replicas' acknowledgement; the server answers those "UNBLOCKED force unblock from blocking
operation, instance state changed (master -> replica?)". A master paused for writes, as the
failover pauses it, asks its replicas for no acknowledgement, so a WAIT that came just before is
released only by the replica's once-a-second ack, and a failover is faster than that.

So the master is first paused for writes (the pause ends by itself if we go away), until no
client is blocked in WAIT any more (CLIENT LIST): most often at once; else when the replicas'
next acknowledgement releases them. Then the failover, and the pause is lifted: the writes it
held are then answered with MOVED to the new master, which clients follow. The server keeps
paused clients through the role change; only clients blocked in WAIT (or on keys) are cut off.
The pause then lasts about as long as the failover's own, unless a WAIT was waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.replies import clients_in_wait, parse_info, replicating_from
from redkube.model.addresses import Address

# Longer than draining plus the failover's own confirmation, so the pause cannot end mid-failover;
# short enough that writes come back by themselves if the operator dies in between.
PAUSE_MS = 12_000
# Replicas acknowledge once a second by themselves; a WAIT still blocked after that waits on a
# replica that is behind, left to the failover's own catch-up.
DRAIN_TIMEOUT_S = 1.5
POLL_INTERVAL_S = 0.02


async def hand_over(
    replica: Address, pool: ClientPool, fail_over: Callable[[], Awaitable[None]]
) -> None:
    """Run ``fail_over`` (a graceful failover to ``replica``) with its master's writes paused and
    its WAITs released. If the master cannot be paused, the failover runs as it is."""
    info = parse_info(await pool.client(replica).text("INFO", "replication"))
    master = replicating_from(info)
    if master is None or not await _pause_writes(master, pool):
        await fail_over()
        return
    try:
        await _drain_waits(master, pool)
        await fail_over()
    finally:
        with contextlib.suppress(AdminError):  # else the pause ends by itself after PAUSE_MS
            await pool.client(master).command("CLIENT", "UNPAUSE", attempts=2)


async def _pause_writes(master: Address, pool: ClientPool) -> bool:
    try:
        await pool.client(master).command("CLIENT", "PAUSE", PAUSE_MS, "WRITE", attempts=1)
    except AdminError:
        return False
    return True


async def _drain_waits(master: Address, pool: ClientPool) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if clients_in_wait(await pool.client(master).text("CLIENT", "LIST")) == 0:
            return
        await asyncio.sleep(POLL_INTERVAL_S)
