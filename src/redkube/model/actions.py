"""The single next step of the reconcile loop, as plain values.

Planning returns one of these; the control layer hands it to the Redis admin or to the platform.
An action may touch several nodes at once (MEET every missing pair, say): it is still one change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from redkube.model.addresses import Address
from redkube.model.slots import SlotRange, describe_ranges


class FailoverMode(Enum):
    DEFAULT = "default"
    FORCE = "force"
    TAKEOVER = "takeover"


@dataclass(frozen=True)
class StartMembers:
    names: tuple[str, ...]

    def describe(self) -> str:
        return f"start {', '.join(self.names)}"


@dataclass(frozen=True)
class SetConfigEpochs:
    epochs: tuple[tuple[Address, int], ...]

    def describe(self) -> str:
        return f"set distinct config epochs on {len(self.epochs)} nodes"


@dataclass(frozen=True)
class AddSlots:
    assignments: tuple[tuple[Address, tuple[SlotRange, ...]], ...]

    def describe(self) -> str:
        parts = (f"{describe_ranges(ranges)} to {address}" for address, ranges in self.assignments)
        return "assign slots " + "; ".join(parts)


@dataclass(frozen=True)
class Meet:
    pairs: tuple[tuple[Address, Address], ...]

    def describe(self) -> str:
        targets = sorted({str(target) for _, target in self.pairs})
        return f"introduce nodes ({len(self.pairs)} meets, targets {', '.join(targets)})"


@dataclass(frozen=True)
class Replicate:
    assignments: tuple[tuple[Address, str], ...]

    def describe(self) -> str:
        parts = (f"{replica} -> {master_id[:8]}" for replica, master_id in self.assignments)
        return "attach replicas " + ", ".join(parts)


@dataclass(frozen=True)
class Failover:
    """``certain``: the master is known dead, so if an election (FORCE) cannot finish, taking
    over without one (TAKEOVER) is safe."""

    replica: Address
    mode: FailoverMode
    reason: str
    certain: bool = False

    def describe(self) -> str:
        return f"failover ({self.mode.value}) to {self.replica}: {self.reason}"


@dataclass(frozen=True)
class Forget:
    node_id: str
    on: tuple[Address, ...]

    def describe(self) -> str:
        return f"forget stale node {self.node_id[:8]} on {len(self.on)} nodes"


@dataclass(frozen=True)
class Reset:
    """CLUSTER RESET SOFT: the node forgets its peers (and, being empty, loses nothing)."""

    address: Address
    reason: str

    def describe(self) -> str:
        return f"reset {self.address}: {self.reason}"


@dataclass(frozen=True)
class Wait:
    """Nothing to do but let Redis (or the platform) progress; ``reason`` says on what."""

    reason: str

    def describe(self) -> str:
        return f"waiting: {self.reason}"


Action = StartMembers | SetConfigEpochs | AddSlots | Meet | Replicate | Failover | Forget | Reset
Step = Action | Wait | None
