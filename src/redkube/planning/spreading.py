"""Masters spread over hosts: which shard should move its master to which host (pure).

Each shard's master sits on one host; the shard could move it (by a graceful failover) to any host
that holds one of its linked replicas. The spread is best when the sum of squared masters per host
is smallest: then losing one host loses as few masters as can be.

A spread is best exactly when no *improving chain* exists: shards s1..sk, s1 mastered on a host h0
holding v masters, each s_i able to move to host h_i, where s_{i+1} is mastered, and h_k holding
at most v - 2 masters. Moving every shard of the chain takes one master from h0 and gives one to
h_k, lowering the sum by at least 2. One move per shard is not enough: with masters 2, 1, 0 on
three hosts, where the crowded host's shards can only move to the middle one, two moves are
needed, the middle host's shard first to the empty host.

A running cluster moves one master at a time, the *last* link of the chain that the highest
crowded level allows, shortest first. That move never raises the sum, and when it keeps the sum,
the rest of the chain is an improving chain one link shorter at a level no higher, so the moves
end, each pass deciding afresh from what it observes.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Collection, Mapping

# (shard, host its master moves to), in chain order: the first link leaves the crowded host.
Link = tuple[int, str]


def improving_chain(
    masters: Mapping[int, str], options: Mapping[int, Collection[str]]
) -> tuple[Link, ...] | None:
    """The shortest improving chain from the most crowded level that has one, or None when the
    spread is already best. ``masters`` maps each shard to its master's host; ``options`` each
    shard to the hosts its master could move to."""
    loads = Counter(masters.values())
    by_host: dict[str, list[int]] = defaultdict(list)
    for shard, host in sorted(masters.items()):
        by_host[host].append(shard)
    for level in sorted(set(loads.values()), reverse=True):
        if level < 2:
            return None
        chain = _shortest_chain(level, loads, by_host, options)
        if chain is not None:
            return chain
    return None


def _shortest_chain(
    level: int,
    loads: Counter[str],
    by_host: Mapping[str, list[int]],
    options: Mapping[int, Collection[str]],
) -> tuple[Link, ...] | None:
    """Breadth-first from every host holding ``level`` masters to the nearest host holding at
    most ``level - 2`` (ties broken by name, so the answer is the same every pass)."""
    starts = sorted(host for host, load in loads.items() if load == level)
    reached_by: dict[str, tuple[str, int] | None] = dict.fromkeys(starts)
    queue = deque(starts)
    while queue:
        host = queue.popleft()
        for shard in by_host.get(host, ()):
            for other in sorted(options.get(shard, ())):
                if other in reached_by:
                    continue
                reached_by[other] = (host, shard)
                if loads[other] <= level - 2:
                    return _links_to(other, reached_by)
                queue.append(other)
    return None


def _links_to(end: str, reached_by: Mapping[str, tuple[str, int] | None]) -> tuple[Link, ...]:
    links: list[Link] = []
    host = end
    while (came := reached_by[host]) is not None:
        previous, shard = came
        links.append((shard, host))
        host = previous
    return tuple(reversed(links))


def balanced(masters: Mapping[int, str], options: Mapping[int, Collection[str]]) -> dict[int, str]:
    """The best spread reachable from ``masters``, whole chains at a time (for a plan that moves
    no master yet, such as choosing the first masters of a new cluster)."""
    spread = dict(masters)
    while (chain := improving_chain(spread, options)) is not None:
        for shard, host in chain:
            spread[shard] = host
    return spread
