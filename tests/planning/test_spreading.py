"""planning.spreading: the best spread of masters over hosts, and the one-at-a-time moves that
reach it, checked against brute force on many small random placements."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence

from redkube.planning.spreading import balanced, improving_chain


def squares(masters: Mapping[int, str]) -> int:
    return sum(n * n for n in Counter(masters.values()).values())


def best_squares(members: Sequence[Sequence[str]]) -> int:
    """The smallest sum of squared masters per host over every choice of masters."""
    return min(
        squares(dict(enumerate(choice))) for choice in itertools.product(*map(sorted, members))
    )


def options_of(members: Sequence[Sequence[str]]) -> dict[int, set[str]]:
    return {shard: set(hosts) for shard, hosts in enumerate(members)}


def random_placement(rng: random.Random) -> list[list[str]]:
    hosts = [f"h{i}" for i in range(rng.randint(2, 5))]
    per_shard = rng.randint(1, 3)
    return [[rng.choice(hosts) for _ in range(per_shard)] for _ in range(rng.randint(1, 6))]


def test_two_moves_when_one_is_not_enough() -> None:
    """What the scheduler did in CI: masters 2, 1, 0 on three nodes; the crowded node's shards can
    only move to the middle node, whose own shard can move to the empty one."""
    members = [["node-2", "node-3"], ["node-1", "node-2"], ["node-1", "node-2"]]
    masters = {0: "node-2", 1: "node-1", 2: "node-1"}
    chain = improving_chain(masters, options_of(members))
    assert chain == ((1, "node-2"), (0, "node-3"))
    assert sorted(balanced(masters, options_of(members)).values()) == ["node-1", "node-2", "node-3"]


def test_nothing_to_do_when_the_spread_is_the_best_the_placement_allows() -> None:
    members = [["a", "b"], ["a", "b"], ["a", "b"]]
    assert improving_chain({0: "a", 1: "a", 2: "b"}, options_of(members)) is None
    assert improving_chain({0: "a", 1: "b", 2: "c"}, {0: {"b"}, 1: {"c"}, 2: {"a"}}) is None


def test_a_shard_without_replicas_never_moves() -> None:
    members = [["a"], ["a"], ["a", "b"]]
    assert balanced({0: "a", 1: "a", 2: "a"}, options_of(members)) == {0: "a", 1: "a", 2: "b"}


def test_balanced_reaches_the_brute_force_best_on_random_placements() -> None:
    rng = random.Random(20261130)
    for _ in range(400):
        members = random_placement(rng)
        start = {shard: rng.choice(hosts) for shard, hosts in enumerate(members)}
        spread = balanced(start, options_of(members))
        assert all(spread[shard] in members[shard] for shard in spread)
        assert squares(spread) == best_squares(members), (members, start, spread)
        assert improving_chain(spread, options_of(members)) is None


def test_one_move_at_a_time_never_worsens_and_ends_at_the_best() -> None:
    """What the loop does: each pass moves one shard, the chain's last link, and decides afresh;
    the sum of squares never rises, and the moves end (bounded here) at the best spread."""
    rng = random.Random(7)
    for _ in range(400):
        members = random_placement(rng)
        masters = {shard: rng.choice(hosts) for shard, hosts in enumerate(members)}
        for _ in range(100):
            chain = improving_chain(masters, options_of(members))
            if chain is None:
                break
            before = squares(masters)
            shard, host = chain[-1]
            masters[shard] = host
            assert squares(masters) <= before
        else:
            raise AssertionError(f"moves did not end: {members}")
        assert squares(masters) == best_squares(members), (members, masters)
