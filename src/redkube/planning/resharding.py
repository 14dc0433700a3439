"""Resharding: how many slots each shard should hold, and the fewest slot moves to get there.

Pure and level-triggered: the plan is computed from the slots each shard serves now, every pass.
The targets are stable while the moves run (a donor never drops below its target, a receiver
never rises above it), so recomputing mid-move gives the rest of the same moves and no slot moves
twice. Shards numbered ``shards`` and up are departing: they give every slot away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redkube.model.slots import SlotRange, ranges_of


@dataclass(frozen=True)
class Move:
    """Slots to move from one shard to another, as contiguous ranges."""

    source: int
    target: int
    ranges: tuple[SlotRange, ...]

    @property
    def slots(self) -> int:
        return sum(len(r) for r in self.ranges)


def target_counts(holdings: Mapping[int, int], shards: int) -> dict[int, int]:
    """How many slots each shard should hold: every kept shard (0 .. shards-1) within one slot of
    the others, departing shards none. Of the kept shards, those holding at least the larger
    share keep it first (fewest moves), lowest shard number first; the rest of the larger shares
    go to the lowest-numbered other kept shards. Both orders depend on nothing the moves change
    (a donor stays at or above its target), so the targets hold still while slots move."""
    if shards < 1:
        raise ValueError(f"cannot reshard to {shards} shards")
    total = sum(holdings.values())
    base, extra = divmod(total, shards)
    kept = range(shards)
    full = [shard for shard in kept if holdings.get(shard, 0) >= base + 1]
    others = [shard for shard in kept if holdings.get(shard, 0) < base + 1]
    larger = set((full + others)[:extra])
    targets = {shard: base + (1 if shard in larger else 0) for shard in kept}
    for shard in holdings:
        if shard >= shards:
            targets[shard] = 0
    return targets


def plan_moves(holdings: Mapping[int, Iterable[int]], shards: int) -> tuple[Move, ...]:
    """The moves that bring ``holdings`` (shard -> slots it serves) to ``shards`` balanced
    shards. Each donor gives its highest-numbered slots (what it keeps stays contiguous); the
    slots given are handed to receivers in shard order, lowest slots first."""
    owned = {shard: sorted(slots) for shard, slots in holdings.items()}
    targets = target_counts({shard: len(slots) for shard, slots in owned.items()}, shards)
    given: list[tuple[int, int]] = []  # (slot, donor), in hand-out order
    for shard in sorted(owned):
        excess = len(owned[shard]) - targets[shard]
        if excess > 0:
            given.extend((slot, shard) for slot in owned[shard][-excess:])
    receivers = [
        (shard, targets[shard] - len(owned.get(shard, [])))
        for shard in sorted(targets)
        if targets[shard] > len(owned.get(shard, []))
    ]
    per_pair: dict[tuple[int, int], list[int]] = {}
    cursor = 0
    for receiver, deficit in receivers:
        for slot, donor in given[cursor : cursor + deficit]:
            per_pair.setdefault((donor, receiver), []).append(slot)
        cursor += deficit
    return tuple(
        Move(donor, receiver, ranges_of(slots)) for (donor, receiver), slots in per_pair.items()
    )


def imbalance(holdings: Mapping[int, Iterable[int]], shards: int) -> int:
    """Slots that must move, at the least, for ``shards`` balanced shards: everything departing
    shards hold, and what kept shards hold above the largest share they can keep."""
    counts = {shard: len(list(slots)) for shard, slots in holdings.items()}
    total = sum(counts.values())
    base, extra = divmod(total, shards)
    kept_counts = [counts.get(shard, 0) for shard in range(shards)]
    can_keep = sum(min(count, base) for count in kept_counts) + min(
        extra, sum(1 for count in kept_counts if count >= base + 1)
    )
    return total - can_keep


def first_slots(move: Move, limit: int) -> Move:
    """The same move cut to its first ``limit`` slots (one batch of a long move)."""
    taken: list[SlotRange] = []
    left = limit
    for slot_range in move.ranges:
        if left <= 0:
            break
        end = min(slot_range.end, slot_range.start + left - 1)
        taken.append(SlotRange(slot_range.start, end))
        left -= end - slot_range.start + 1
    return Move(move.source, move.target, tuple(taken))
