"""What the local supervisor's helper tasks share (password rotation, ACL users, certificate
renewal): a pass every so often until the supervisor stops, the running nodes, a command on
every one of them, and Events said once each (a task that waits says so once, not every pass)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from redkube.admin.connections import AdminError, ClientPool
from redkube.model.addresses import Address
from redkube.model.members import MemberState
from redkube.platform.local.layout import ClusterLayout, StateError
from redkube.platform.local.processes import LocalPlatform


class SupervisorTask:
    what = "a supervisor task"  # named in its messages
    interval_s = 0.5

    def __init__(
        self,
        layout: ClusterLayout,
        platform: LocalPlatform,
        pool: ClientPool,
        record: Callable[[str], None],
    ) -> None:
        self._layout = layout
        self._platform = platform
        self._pool = pool
        self._record = record
        self._said = ""
        self._setup()

    def _setup(self) -> None:
        """A task's own state, made when it is."""

    async def once(self) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except (StateError, OSError) as error:  # a damaged state file: say it, go on
                self._say(f"{self.what} stalled: {error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    def _say(self, message: str) -> None:
        if message != self._said:
            self._said = message
            self._record(message)

    def _running(self) -> list[Address]:
        return [
            m.address
            for m in self._platform.members()
            if m.address is not None and m.state is MemberState.RUNNING
        ]

    async def _on_every_node(
        self, act: Callable[[Address], Awaitable[object]], nodes: list[Address] | None = None
    ) -> bool:
        """``act`` on every running node (or on ``nodes``); whether it succeeded on all. A node
        that is down gets the state of the moment from its redis.conf when it starts."""
        targets = self._running() if nodes is None else nodes
        results = await asyncio.gather(*(act(a) for a in targets), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for error in failed:
            if not isinstance(error, AdminError):
                raise error
        if failed:
            # The error names the node and the command's first words only (never a secret).
            self._say(f"{self.what} waits: {str(failed[0]).split(':')[0]} did not answer")
        return not failed
