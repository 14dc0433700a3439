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

import time

from redkube.control.supervisor_tasks import SupervisorTask


class PasswordRotation(SupervisorTask):
    what = "password rotation"

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
            if not await self._on_every(("ACL", "SETUSER", user, "on", f">{other}")):
                return
            self._layout.switch_password(time.time())
            self._pool.use_credentials(other, credentials.user)
            await self._on_every(("CONFIG", "SET", "masterauth", other))
            switched = self._layout.rotation()
            retire_at = switched.retire_at if switched is not None else None
            at = time.strftime("%H:%M:%S", time.localtime(retire_at or time.time()))
            self._say(f"new password in use on every node; the old one is accepted until {at}")
            return
        await self._on_every(("CONFIG", "SET", "masterauth", current))
        if rotation.retire_at is not None and time.time() < rotation.retire_at:
            return
        if await self._on_every(("ACL", "SETUSER", user, f"<{other}")):
            self._layout.end_rotation()
            self._say("old password removed from every node: the rotation is done")

    async def _on_every(self, command: tuple[str, ...]) -> bool:
        return await self._on_every_node(lambda a: self._pool.client(a).command(*command))
