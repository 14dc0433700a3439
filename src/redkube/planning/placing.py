"""Choosing failure domains: members of one shard apart, replicas away from their master."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from redkube.model.members import FailureDomain

Position = tuple[int, int]  # (shard, ordinal)


def place_members(
    shards: int, members_per_shard: int, domains: Sequence[FailureDomain]
) -> dict[Position, FailureDomain]:
    """Give every (shard, ordinal) a failure domain.

    Greedy, shard by shard: each member takes the domain that shares the fewest hosts, then the
    fewest zones, with the members of its shard already placed, then the least loaded one, then
    the next in rotation. So a shard's members sit on distinct hosts whenever there are enough
    hosts, on distinct zones whenever there are enough zones, and load stays even. Then ordinal 0
    (the first master) goes to whichever of the shard's domains holds the fewest masters so far,
    so that losing one host loses as few masters as possible.
    """
    if not domains:
        raise ValueError("no failure domains to place members on")
    ordered = sorted(set(domains))
    load: Counter[FailureDomain] = Counter()
    masters: Counter[FailureDomain] = Counter()
    placement: dict[Position, FailureDomain] = {}
    for shard in range(shards):
        hosts: Counter[str] = Counter()
        zones: Counter[str] = Counter()
        chosen: list[FailureDomain] = []
        for ordinal in range(members_per_shard):
            rotation = (shard + ordinal) % len(ordered)
            costs = [
                (hosts[d.host], zones[d.zone], load[d], (index - rotation) % len(ordered))
                for index, d in enumerate(ordered)
            ]
            domain = ordered[min(range(len(ordered)), key=costs.__getitem__)]
            chosen.append(domain)
            hosts[domain.host] += 1
            zones[domain.zone] += 1
            load[domain] += 1
        if chosen:
            first = min(range(len(chosen)), key=lambda i: (masters[chosen[i]], i))
            chosen.insert(0, chosen.pop(first))
            masters[chosen[0]] += 1
        for ordinal, domain in enumerate(chosen):
            placement[(shard, ordinal)] = domain
    return placement
