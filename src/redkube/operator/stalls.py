"""A watch on the operator's own event loop: every handler, the Lease renewal and kopf share one
thread, so a call that blocks it (a synchronous client, a long computation) stalls them all and,
past the renew deadline, costs the leadership. A stall is logged with its length, so a lost
Lease or a slow status has its cause in the log."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("redkube.operator")

TICK_S = 0.25
STALL_S = 1.0  # a tick this much late is logged


async def watch_stalls(tick: float = TICK_S, threshold: float = STALL_S) -> None:
    """Sleep `tick` again and again; log a warning whenever the wake-up came `threshold` or
    more late (the loop was busy elsewhere). Runs until cancelled."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick)
        late = time.monotonic() - before - tick
        if late >= threshold:
            log.warning("the event loop was blocked for %.1fs (handlers and the Lease wait)", late)
