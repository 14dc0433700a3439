"""Resharding plans: balanced targets, the fewest moves, and plans that hold still while they run.

The simulation here runs a plan the way the loop does: a batch of some of its moves, then a new plan
from the new holdings, until none is left; and checks every slot has one owner after every step.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redkube.model.slots import ALL_SLOTS, TOTAL_SLOTS
from redkube.planning.allocating import allocate_slots
from redkube.planning.resharding import (
    Move,
    first_slots,
    imbalance,
    plan_moves,
    target_counts,
)


def allocated(shards: int) -> dict[int, frozenset[int]]:
    return {shard: frozenset(r.slots()) for shard, r in enumerate(allocate_slots(shards))}


@st.composite
def layouts(draw: st.DrawFn) -> dict[int, frozenset[int]]:
    """Any split of the 16384 slots over 1-8 shards, in 1-40 contiguous pieces (a skewed
    cluster, one left half-way through an earlier move, one shard holding nothing)."""
    shards = draw(st.integers(1, 8))
    cuts = sorted(set(draw(st.lists(st.integers(1, TOTAL_SLOTS - 1), max_size=39))))
    bounds = [0, *cuts, TOTAL_SLOTS]
    holdings: dict[int, set[int]] = {shard: set() for shard in range(shards)}
    for start, end in itertools.pairwise(bounds):
        holdings[draw(st.integers(0, shards - 1))].update(range(start, end))
    return {shard: frozenset(slots) for shard, slots in holdings.items()}


def apply(holdings: dict[int, frozenset[int]], moves: tuple[Move, ...]) -> set[int]:
    """Move the slots (checking the source owns each); the slots moved."""
    moved: set[int] = set()
    for move in moves:
        slots = {slot for r in move.ranges for slot in r.slots()}
        assert slots <= holdings[move.source], (move, "source does not own them")
        assert not slots & moved, "a slot in two moves of one batch"
        holdings[move.source] -= slots
        holdings[move.target] = holdings.get(move.target, frozenset()) | slots
        moved |= slots
    return moved


def run_to_end(
    holdings: dict[int, frozenset[int]], shards: int, batch: int, pairs: int
) -> tuple[dict[int, frozenset[int]], int, int]:
    """Plan, move a batch, plan again; the final holdings, slots moved and steps taken."""
    holdings = dict(holdings)
    moved_ever: set[int] = set()
    moved = 0
    for step in range(TOTAL_SLOTS + 1):
        plan = plan_moves(holdings, shards)
        if not plan:
            return holdings, moved, step
        batch_moves = tuple(first_slots(m, batch) for m in plan[:pairs])
        slots = apply(holdings, batch_moves)
        assert not slots & moved_ever, "a slot moved twice"
        moved_ever |= slots
        moved += len(slots)
        owners = [slot for slots in holdings.values() for slot in slots]
        assert len(owners) == len(set(owners)) == TOTAL_SLOTS, "every slot has one owner"
    raise AssertionError("the plan did not converge")


def assert_balanced(holdings: dict[int, frozenset[int]], shards: int) -> None:
    counts = [len(holdings.get(shard, frozenset())) for shard in range(shards)]
    assert max(counts) - min(counts) <= 1, counts
    for shard, slots in holdings.items():
        if shard >= shards:
            assert not slots, f"departing shard {shard} still holds {len(slots)} slots"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layouts(),
    st.integers(1, 10),
    st.sampled_from([700, 3000, TOTAL_SLOTS]),
    st.integers(1, 4),
)
def test_plans_converge_moving_each_slot_once_and_no_more_than_the_imbalance(
    layout: dict[int, frozenset[int]], shards: int, batch: int, pairs: int
) -> None:
    final, moved, _ = run_to_end(layout, shards, batch, pairs)
    assert_balanced(final, shards)
    assert moved == imbalance(layout, shards)


@settings(max_examples=200, deadline=None)
@given(layouts(), st.integers(1, 10))
def test_a_plan_moves_each_slot_once_from_its_owner_in_contiguous_ranges_per_pair(
    layout: dict[int, frozenset[int]], shards: int
) -> None:
    plan = plan_moves(layout, shards)
    pairs = [(m.source, m.target) for m in plan]
    assert len(pairs) == len(set(pairs)), "one move per (source, target) pair"
    for move in plan:
        assert move.source != move.target
        for before, after in itertools.pairwise(move.ranges):
            assert after.start > before.end + 1, "ranges are maximal and sorted"
    assert sum(m.slots for m in plan) == imbalance(layout, shards)


@settings(max_examples=200, deadline=None)
@given(layouts(), st.integers(1, 10))
def test_targets_are_balanced_and_still_while_moves_run(
    layout: dict[int, frozenset[int]], shards: int
) -> None:
    counts = {shard: len(slots) for shard, slots in layout.items()}
    targets = target_counts(counts, shards)
    kept = [targets[shard] for shard in range(shards)]
    assert sum(kept) == TOTAL_SLOTS
    assert max(kept) - min(kept) <= 1
    # Half of every move done: the targets are the same.
    half = dict(layout)
    apply(half, tuple(first_slots(m, max(1, m.slots // 2)) for m in plan_moves(layout, shards)))
    assert target_counts({s: len(v) for s, v in half.items()}, shards) == targets


def test_three_to_five_moves_a_fifth_of_the_slots_each_to_two_new_shards() -> None:
    plan = plan_moves(allocated(3), 5)
    assert {m.target for m in plan} == {3, 4}
    # 16384 = 4 x 3277 + 3276: the old shards keep 3277 each, the new ones get 3277 and 3276.
    assert sum(m.slots for m in plan) == 3277 + 3276
    final, moved, _ = run_to_end(allocated(3), 5, TOTAL_SLOTS, 5)
    assert_balanced(final, 5)
    assert moved == imbalance(allocated(3), 5) == 6553


def test_five_to_three_drains_the_two_departing_shards_and_nothing_else() -> None:
    plan = plan_moves(allocated(5), 3)
    assert {m.source for m in plan} == {3, 4}
    final, moved, _ = run_to_end(allocated(5), 3, 500, 2)
    assert_balanced(final, 3)
    assert set().union(*final.values()) == ALL_SLOTS
    assert moved == len(allocated(5)[3]) + len(allocated(5)[4])


def test_one_to_four_and_back() -> None:
    out, moved_out, _ = run_to_end(allocated(1), 4, 1000, 3)
    assert_balanced(out, 4)
    assert moved_out == TOTAL_SLOTS - 4096
    back, moved_back, _ = run_to_end(out, 1, 1000, 3)
    assert back[0] == ALL_SLOTS
    assert moved_back == 3 * 4096


def test_a_change_of_mind_half_way_converges_with_no_empty_shard() -> None:
    """3 -> 5, stopped half-way, then back to 3: the new shards give back what they got."""
    holdings = allocated(3)
    for move in plan_moves(holdings, 5):
        apply(holdings, (first_slots(move, move.slots // 2),))
    back, _, _ = run_to_end(holdings, 3, 300, 2)
    assert_balanced(back, 3)
    assert not back[3] and not back[4]


def test_a_balanced_cluster_needs_no_move() -> None:
    for shards in (1, 3, 5, 7):
        assert plan_moves(allocated(shards), shards) == ()
