"""A local cluster's ACL users kept on every running node (`redkube user set|delete`).

Level-triggered from the files (``users.json`` and ``admin-user``, see
``platform.local.layout``): each pass gives every running node the users it should have (ACL
SETUSER, made again from nothing, so twice is harmless) and deletes any other (ACL DELUSER); a
node that starts gets them from its redis.conf.

The first user switches redkube to a user of its own, in this order, so nothing is ever locked
out: every node learns ``redkube`` (with the cluster password) and the users; then redkube's
clients and the replicas (``masteruser``) authenticate as ``redkube``; then ``default`` goes
off. Deleting the last user goes back the same way: ``default`` on again, then redkube's
clients and the replicas use it, then the ``redkube`` user goes. Each switch is an Event; no
password or hash is in any of them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from redkube.control.supervisor_tasks import SupervisorTask
from redkube.model.addresses import Address
from redkube.model.users import ADMIN_USER, AclUser, admin_user, fingerprint
from redkube.platform.local.configs import default_user
from redkube.platform.local.layout import Credentials

REFRESH_S = 30.0  # users given again to every node this often, whatever changed them


@dataclass(frozen=True)
class NodeAcl:
    """What every running node should have: commands that make it so (idempotent), and the
    users it may keep (any other is deleted)."""

    commands: tuple[tuple[str, ...], ...]
    keep: frozenset[str]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self.commands).encode()).hexdigest()


def wanted(users: tuple[AclUser, ...], credentials: Credentials, default_on: bool) -> NodeAcl:
    """The nodes' ACL for ``users`` while redkube authenticates as ``credentials.user``;
    ``default_on``: the default user is (made) on again, with the cluster password."""
    switched = credentials.user is not None
    if not users and not switched:
        return NodeAcl((), frozenset({"default"}))  # redkube's user goes, if a switch left it
    own = (admin_user(credentials.accepted), *users)
    commands = [("ACL", "SETUSER", *u.setuser()) for u in own]
    if default_on and switched:
        commands.append(("ACL", "SETUSER", *default_user(credentials.accepted).setuser()))
        commands.append(("CONFIG", "SET", "masteruser", ""))
    elif switched:
        commands.append(("ACL", "SETUSER", "default", "reset", "off"))
        commands.append(("CONFIG", "SET", "masteruser", ADMIN_USER))
    return NodeAcl(tuple(commands), frozenset({"default", *(u.name for u in own)}))


class UserSync(SupervisorTask):
    what = "ACL user sync"

    def _setup(self) -> None:
        self._applied: dict[Address, str] = {}
        self._refreshed = time.monotonic()

    async def once(self) -> None:
        if time.monotonic() - self._refreshed > REFRESH_S:
            self._applied, self._refreshed = {}, time.monotonic()
        users = self._layout.users(time.time())
        credentials = self._layout.credentials()
        switched = credentials.user is not None
        nodes = self._running()
        if not nodes:
            return
        if users and not switched:
            # Every node knows redkube's user before anyone authenticates as it.
            if await self._apply(nodes, wanted(users, credentials, default_on=True)):
                self._layout.switch_admin_user(True)
                self._pool.use_credentials(credentials.current, ADMIN_USER)
                self._say(
                    f"redkube authenticates as its own user {ADMIN_USER!r} now; the default "
                    f"user goes off (users: {', '.join(u.name for u in users)})"
                )
            return
        if switched and not users:
            # The default user is on again before redkube's user goes.
            if await self._apply(nodes, wanted(users, credentials, default_on=True)):
                self._layout.switch_admin_user(False)
                self._pool.use_credentials(credentials.current, None)
                self._say("no ACL users left: the default user is on again, redkube uses it")
            return
        if await self._apply(nodes, wanted(users, credentials, default_on=False)):
            self._layout.write_users_applied(fingerprint(users))
            if users:
                self._say(f"ACL users on every node: {', '.join(u.name for u in users)}")

    async def _apply(self, nodes: list[Address], acl: NodeAcl) -> bool:
        """``acl`` on every node in ``nodes``; whether it holds on all of them."""
        return await self._on_every_node(lambda node: self._apply_to(node, acl), nodes)

    async def _apply_to(self, node: Address, acl: NodeAcl) -> None:
        client = self._pool.client(node)
        if self._applied.get(node) != acl.fingerprint:
            for command in acl.commands:
                await client.command(*command)
            self._applied[node] = acl.fingerprint
        listed = await client.command("ACL", "USERS")
        names = [str(n) for n in listed] if isinstance(listed, list) else []
        for extra in sorted(set(names) - acl.keep):
            await client.command("ACL", "DELUSER", extra)
