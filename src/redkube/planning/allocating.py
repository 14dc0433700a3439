"""Spreading the 16384 hash slots over shards in contiguous ranges."""

from __future__ import annotations

from redkube.model.slots import TOTAL_SLOTS, SlotRange


def allocate_slots(shards: int) -> tuple[SlotRange, ...]:
    """One contiguous range per shard, sizes differing by at most one, like redis-cli does.

    For 3 shards this gives 0-5460, 5461-10922, 10923-16383.
    """
    if shards < 1 or shards > TOTAL_SLOTS:
        raise ValueError(f"cannot allocate slots to {shards} shards")
    per_shard = TOTAL_SLOTS / shards
    ranges: list[SlotRange] = []
    first = 0
    cursor = 0.0
    for shard in range(shards):
        last = int(cursor + per_shard - 1 + 0.5)
        if shard == shards - 1 or last > TOTAL_SLOTS - 1:
            last = TOTAL_SLOTS - 1
        ranges.append(SlotRange(first, last))
        first = last + 1
        cursor += per_shard
    return tuple(ranges)


def shard_of_slot(slot: int, allocation: tuple[SlotRange, ...]) -> int:
    for shard, slot_range in enumerate(allocation):
        if slot in slot_range:
            return shard
    raise ValueError(f"slot {slot} is not allocated")
