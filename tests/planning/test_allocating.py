"""Slot allocation: contiguous, ordered, even ranges covering 0..16383 exactly once."""

from __future__ import annotations

import bisect
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkube.model.slots import (
    ALL_SLOTS,
    TOTAL_SLOTS,
    SlotRange,
    describe_ranges,
    ranges_of,
    slots_of,
)
from redkube.planning.allocating import allocate_slots, shard_of_slot

shard_counts = st.integers(1, TOTAL_SLOTS)
EDGE_COUNTS = [1, 2, 3, 5, 6, 7, 1000, 8191, 8192, 8193, 10923, 16383, 16384]


def _check_allocation(shards: int) -> None:
    ranges = allocate_slots(shards)
    assert len(ranges) == shards
    assert ranges[0].start == 0
    assert ranges[-1].end == TOTAL_SLOTS - 1
    for before, after in itertools.pairwise(ranges):
        assert after.start == before.end + 1, (before, after)
    sizes = [len(r) for r in ranges]
    assert sum(sizes) == TOTAL_SLOTS
    assert max(sizes) - min(sizes) <= 1, (min(sizes), max(sizes))
    assert min(sizes) == TOTAL_SLOTS // shards
    assert slots_of(ranges) == ALL_SLOTS


@settings(max_examples=150, deadline=None)
@given(shard_counts)
def test_allocation_covers_every_slot_once_in_ordered_contiguous_even_ranges(shards: int) -> None:
    _check_allocation(shards)


@pytest.mark.parametrize("shards", EDGE_COUNTS)
def test_allocation_at_edge_shard_counts(shards: int) -> None:
    _check_allocation(shards)


def test_three_shards_split_like_redis_cli() -> None:
    assert allocate_slots(3) == (
        SlotRange(0, 5460),
        SlotRange(5461, 10922),
        SlotRange(10923, 16383),
    )


def test_six_shards_split_like_redis_cli() -> None:
    # redis-cli --cluster create with 6 masters: "Master[0] -> Slots 0 - 2730" ...
    assert [str(r) for r in allocate_slots(6)] == [
        "0-2730",
        "2731-5460",
        "5461-8191",
        "8192-10922",
        "10923-13652",
        "13653-16383",
    ]


def test_four_shards_split_exactly() -> None:
    assert [str(r) for r in allocate_slots(4)] == [
        "0-4095",
        "4096-8191",
        "8192-12287",
        "12288-16383",
    ]


def test_one_slot_per_shard_at_the_maximum() -> None:
    ranges = allocate_slots(TOTAL_SLOTS)
    assert all(r.start == r.end == shard for shard, r in enumerate(ranges))


@pytest.mark.parametrize("shards", [0, -1, TOTAL_SLOTS + 1])
def test_impossible_shard_counts_are_rejected(shards: int) -> None:
    with pytest.raises(ValueError, match="cannot allocate"):
        allocate_slots(shards)


@settings(max_examples=150, deadline=None)
@given(
    shards=shard_counts,
    slots=st.lists(st.integers(0, TOTAL_SLOTS - 1), min_size=1, max_size=30),
    picks=st.lists(st.integers(0, TOTAL_SLOTS - 1), max_size=10),
)
def test_shard_of_slot_agrees_with_the_ranges(
    shards: int, slots: list[int], picks: list[int]
) -> None:
    ranges = allocate_slots(shards)
    starts = [r.start for r in ranges]
    for slot in slots:
        shard = shard_of_slot(slot, ranges)
        assert slot in ranges[shard]
        assert shard == bisect.bisect_right(starts, slot) - 1
    for pick in picks:  # both ends of some shards' ranges
        shard = pick % shards
        assert shard_of_slot(ranges[shard].start, ranges) == shard
        assert shard_of_slot(ranges[shard].end, ranges) == shard


def test_shard_of_slot_outside_the_allocation_is_an_error() -> None:
    with pytest.raises(ValueError, match="not allocated"):
        shard_of_slot(TOTAL_SLOTS, allocate_slots(3))
    with pytest.raises(ValueError, match="not allocated"):
        shard_of_slot(100, (SlotRange(0, 99), SlotRange(101, 200)))


# -- ranges_of / slots_of --------------------------------------------------------------------

slot_sets = st.one_of(
    st.frozensets(st.integers(0, TOTAL_SLOTS - 1), max_size=200),
    # unions of a few runs, so that long ranges and adjacent runs occur
    st.lists(st.tuples(st.integers(0, TOTAL_SLOTS - 1), st.integers(0, 3000)), max_size=6).map(
        lambda runs: frozenset(
            s for start, length in runs for s in range(start, min(start + length, TOTAL_SLOTS))
        )
    ),
)


@settings(max_examples=200, deadline=None)
@given(slot_sets)
def test_ranges_of_round_trips_into_fewest_sorted_ranges(slots: frozenset[int]) -> None:
    ranges = ranges_of(slots)
    assert slots_of(ranges) == slots
    assert sum(len(r) for r in ranges) == len(slots)
    for before, after in itertools.pairwise(ranges):
        assert after.start > before.end + 1, "adjacent ranges must be merged"
    # fewest ranges: one per maximal run, i.e. per slot whose predecessor is missing
    assert len(ranges) == sum(1 for s in slots if s - 1 not in slots)


@settings(max_examples=100, deadline=None)
@given(slot_sets)
def test_ranges_of_ignores_order_and_duplicates(slots: frozenset[int]) -> None:
    listed = sorted(slots, reverse=True) * 2
    assert ranges_of(listed) == ranges_of(slots)


def test_ranges_of_examples() -> None:
    assert ranges_of([]) == ()
    assert ranges_of([5, 3, 4, 9, 0]) == (SlotRange(0, 0), SlotRange(3, 5), SlotRange(9, 9))
    assert describe_ranges(ranges_of([5, 3, 4, 9, 0])) == "0,3-5,9"
    assert describe_ranges(()) == "-"
    assert ranges_of(ALL_SLOTS) == (SlotRange(0, TOTAL_SLOTS - 1),)


@pytest.mark.parametrize(("start", "end"), [(-1, 0), (5, 4), (0, TOTAL_SLOTS)])
def test_invalid_slot_ranges_are_rejected(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="invalid slot range"):
        SlotRange(start, end)
