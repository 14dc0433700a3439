"""Where Redis nodes run: the Platform protocol and its backends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from redkube.model.members import Member


class Platform(Protocol):
    """What the reconcile loop needs from wherever nodes run (local processes, Kubernetes)."""

    # Whether start() starts members itself (local processes), or the platform starts them on
    # its own and start() only waits (Kubernetes: the kubelet and the StatefulSet controller).
    starts_members: bool

    def members(self) -> Sequence[Member]:
        """Every member of the spec, with its address, failure domain and state, right now."""
        ...

    async def start(self, names: Sequence[str]) -> None:
        """Start the named stopped members (a kubelet restarting a container)."""
        ...

    async def retire(self, names: Sequence[str]) -> None:
        """Stop and remove the named members for good (the spec has no place for them and they
        hold nothing any more)."""
        ...

    async def restart(self, names: Sequence[str]) -> None:
        """Stop the named members and start them again on the revision they should run (a
        rolling update): a Pod deleted for its StatefulSet to recreate, a process restarted."""
        ...

    async def wait_for_change(self, timeout: float) -> None:
        """Return as soon as the platform sees a change (a death), or after ``timeout``."""
        ...
