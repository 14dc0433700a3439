"""The operator logs a stall of its event loop (a blocking call starves the Lease renewal and
every handler), with its length."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from redkube.operator.stalls import watch_stalls


def test_a_blocked_loop_is_logged_with_its_length(caplog: pytest.LogCaptureFixture) -> None:
    async def check() -> None:
        watch = asyncio.create_task(watch_stalls(tick=0.05, threshold=0.5))
        await asyncio.sleep(0.2)
        time.sleep(0.8)  # the loop blocked, as a synchronous call would
        await asyncio.sleep(0.2)
        watch.cancel()

    with caplog.at_level(logging.WARNING, logger="redkube.operator"):
        asyncio.run(check())
    said = [r.getMessage() for r in caplog.records]
    blocked = [float(m.split("blocked for ")[1].split("s")[0]) for m in said]
    assert blocked and max(blocked) >= 0.5, said
