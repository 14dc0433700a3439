"""Writing a RedisCluster's status: one write at a time, always the newest.

Concurrent writes can land out of order (one that renews its token after a 401 lands after a
newer one), and the loop writes only changes: an older status left last would stay for good,
e.g. "syncing from its master" on a cluster long Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

JSON = dict[str, Any]
log = logging.getLogger(__name__)


class LatestStatus:
    def __init__(self, write: Callable[[JSON], Awaitable[bool]]) -> None:
        self._write = write
        self._next: JSON | None = None
        self._task: asyncio.Task[None] | None = None
        # The last write failed: the same status is to be offered again.
        self.failed = False

    def offer(self, status: JSON) -> None:
        """Write `status` after the write in progress, replacing any status still waiting."""
        self._next = status
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._next is not None:
            status, self._next = self._next, None
            try:
                self.failed = not await self._write(status)
            except Exception as error:  # a timeout, a credential plugin that failed: said, retried
                log.warning("status not written: %s: %s", type(error).__name__, error)
                self.failed = True

    async def finish(self, timeout: float) -> None:
        """Let the writes under way end, for at most `timeout` seconds."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._task, timeout)
