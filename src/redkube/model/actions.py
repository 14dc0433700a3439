"""The single next step of the reconcile loop, as plain values.

Planning returns one of these; the control layer hands it to the Redis admin or to the platform.
An action may touch several nodes at once (MEET every missing pair, say): it is still one change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from redkube.model.addresses import Address
from redkube.model.slots import SlotRange, describe_ranges, ranges_of


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
class SlotMove:
    """Slots, and their keys, to move from one master to another."""

    source: Address
    source_id: str
    target: Address
    target_id: str
    ranges: tuple[SlotRange, ...]

    @property
    def slots(self) -> int:
        return sum(len(r) for r in self.ranges)

    def describe(self) -> str:
        return f"{describe_ranges(self.ranges)} {self.source} -> {self.target}"


@dataclass(frozen=True)
class MoveSlots:
    """One batch of a resharding: its moves (no slot in two) run at once. ``atomic``: Valkey's
    atomic slot migration (CLUSTER MIGRATESLOTS); else the classic protocol (SETSLOT, MIGRATE).
    ``remaining``: slots the plan still moves after this batch (for progress); ``masters``: every
    reachable master, told the new owners at once (classic)."""

    moves: tuple[SlotMove, ...]
    atomic: bool
    remaining: int = 0
    masters: tuple[Address, ...] = ()

    @property
    def slots(self) -> int:
        return sum(move.slots for move in self.moves)

    def describe(self) -> str:
        how = "atomic" if self.atomic else "classic"
        parts = "; ".join(move.describe() for move in self.moves)
        return f"move {self.slots} slots ({how}): {parts}; {self.remaining} more to move after"


@dataclass(frozen=True)
class CloseSlots:
    """Roll back slots left open (MIGRATING/IMPORTING) where no key moved: SETSLOT STABLE on the
    owner first (no more ASK redirects), then on the others once they hold no key of it."""

    owner: Address
    others: tuple[Address, ...]
    slots: tuple[int, ...]

    def describe(self) -> str:
        return f"close open slots {describe_ranges(ranges_of(self.slots))} (no key had moved)"


@dataclass(frozen=True)
class TellOwner:
    """SETSLOT NODE on a node whose view of some slots' owner is stale for good, with ``why``:
    - a node importing slots ignores gossip about them, so after a failover mid-move (or a
      source turned replica, which leaves its slots unassigned in that view) only this tells
      it; until then it refuses the keys of the move (CLUSTERDOWN);
    - a master that every other node sees serving slots it does not claim itself (Redis 7.0,
      after a slot moved back to it): nobody claims them with a newer epoch, so gossip never
      corrects it; told it owns them (SETSLOT NODE <itself>), it claims them again."""

    address: Address
    owner_id: str
    slots: tuple[int, ...]
    why: str = "it imports them"

    def describe(self) -> str:
        ranges = describe_ranges(ranges_of(self.slots))
        return f"tell {self.address} that {self.owner_id[:8]} serves {ranges} ({self.why})"


@dataclass(frozen=True)
class RetireMembers:
    """Members of departing shards (drained) or departing ordinals (no master): stopped and
    removed by the platform; their node IDs are forgotten after."""

    names: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        return f"retire {', '.join(self.names)}: {self.reason}"


@dataclass(frozen=True)
class RestartMembers:
    """Members restarted so that they run the revision the spec defines (a rolling update):
    the platform stops each and starts it again as the spec says (a Pod deleted and recreated by
    its StatefulSet; a process started with the new binary and settings)."""

    names: tuple[str, ...]
    reason: str
    # A restart that makes data unavailable for a while (a shard's only node): said as a warning.
    disruptive: bool = False

    def describe(self) -> str:
        warning = "warning: " if self.disruptive else ""
        return f"{warning}restart {', '.join(self.names)}: {self.reason}"


@dataclass(frozen=True)
class SetConfig:
    """Live settings (CONFIG SET, no restart): (node, key, value) triples."""

    assignments: tuple[tuple[Address, str, str], ...]

    def describe(self) -> str:
        settings = sorted({f"{key} {value}" for _, key, value in self.assignments})
        nodes = len({address for address, _, _ in self.assignments})
        return f"set {', '.join(settings)} live on {nodes} node{'s' * (nodes != 1)}"


@dataclass(frozen=True)
class Wait:
    """Nothing to do but let Redis (or the platform) progress; ``reason`` says on what."""

    reason: str

    def describe(self) -> str:
        return f"waiting: {self.reason}"


Action = (
    StartMembers
    | SetConfigEpochs
    | AddSlots
    | Meet
    | Replicate
    | Failover
    | Forget
    | Reset
    | MoveSlots
    | CloseSlots
    | TellOwner
    | RetireMembers
    | RestartMembers
    | SetConfig
)
Step = Action | Wait | None
