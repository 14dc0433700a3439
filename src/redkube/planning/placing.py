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
    fewest zones, with the members of its shard already placed, then the least loaded one. So a
    shard's members sit on distinct hosts whenever there are enough hosts, and on distinct zones
    whenever there are enough zones; ordinal 0 (the first master) rotates across hosts.
    """
    if not domains:
        raise ValueError("no failure domains to place members on")
    ordered = sorted(set(domains))
    load: Counter[FailureDomain] = Counter()
    placement: dict[Position, FailureDomain] = {}
    for shard in range(shards):
        hosts: Counter[str] = Counter()
        zones: Counter[str] = Counter()
        for ordinal in range(members_per_shard):
            rotation = (shard + ordinal) % len(ordered)
            costs = [
                (hosts[d.host], zones[d.zone], load[d], (index - rotation) % len(ordered))
                for index, d in enumerate(ordered)
            ]
            chosen = ordered[min(range(len(ordered)), key=costs.__getitem__)]
            placement[(shard, ordinal)] = chosen
            hosts[chosen.host] += 1
            zones[chosen.zone] += 1
            load[chosen] += 1
    return placement
