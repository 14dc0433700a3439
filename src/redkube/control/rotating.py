"""A local cluster's password rotated with no client error (`redkube up --rotate-password`).

Driven by the files the command leaves (see ``platform.local.layout``), so a killed supervisor
resumes where it was:

1. ``password.next`` exists: every running node learns the new password beside the old one
   (``ACL SETUSER default >new``: the default user may have several; with ACL users it is
   redkube's own user, see ``control.users``); a node that starts
   meanwhile gets both from its redis.conf.
2. Once every running node has it, the new password becomes the current one (the files are
   switched), replicas authenticate with it (``CONFIG SET masterauth``) and redkube's own clients
   too; clients that still use the old one keep working until the grace period ends.
3. Then the old password is removed from every node (``ACL SETUSER default <old``); a node that
   was down meanwhile starts with only the new one.

Each step is an Event; no password is in any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from redkube.admin.connections import AdminError, ClientPool
from redkube.model.members import MemberState
from redkube.platform.local.layout import ClusterLayout, StateError
from redkube.platform.local.processes import LocalPlatform

INTERVAL_S = 0.5


class PasswordRotation:
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

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except (StateError, OSError) as error:  # a damaged state file: say it, go on
                self._say(f"password rotation stalled: {error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL_S)

    def _say(self, message: str) -> None:
        if message != self._said:
            self._said = message
            self._record(message)

    async def once(self) -> None:
        rotation = self._layout.rotation()
        if rotation is None:
            return
        credentials = self._layout.credentials()
        if len(credentials.accepted) < 2:
            self._layout.end_rotation()  # nothing left to rotate (a half-finished end)
            return
        current, other = credentials.accepted
        user = credentials.user or "default"  # redkube's own user once the cluster has users
        if rotation.adding:
            if not await self._on_every_node(("ACL", "SETUSER", user, "on", f">{other}")):
                return
            self._layout.switch_password(time.time())
            self._pool.use_credentials(other, credentials.user)
            await self._on_every_node(("CONFIG", "SET", "masterauth", other))
            switched = self._layout.rotation()
            retire_at = switched.retire_at if switched is not None else None
            at = time.strftime("%H:%M:%S", time.localtime(retire_at or time.time()))
            self._say(f"new password in use on every node; the old one is accepted until {at}")
            return
        await self._on_every_node(("CONFIG", "SET", "masterauth", current))
        if rotation.retire_at is not None and time.time() < rotation.retire_at:
            return
        if await self._on_every_node(("ACL", "SETUSER", user, f"<{other}")):
            self._layout.end_rotation()
            self._say("old password removed from every node: the rotation is done")

    async def _on_every_node(self, command: tuple[str, ...]) -> bool:
        """The command on every running node; whether it succeeded on all. A node that is down
        gets the passwords of the moment from its redis.conf when it starts."""
        running = [
            m.address
            for m in self._platform.members()
            if m.address is not None and m.state is MemberState.RUNNING
        ]
        results = await asyncio.gather(
            *(self._pool.client(a).command(*command) for a in running), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        for error in failed:
            if not isinstance(error, AdminError):
                raise error
        if failed:
            # The error names the node and the command's first words only (never a password).
            self._say(f"password rotation waits: {str(failed[0]).split(':')[0]} did not answer")
        return not failed
