"""Placement of (shard, ordinal) members on failure domains.

What the greedy guarantees (cost = hosts already used by the shard, then zones, then global load):

* every member placed on one of the given domains;
* hosts >= members_per_shard: a shard's members on distinct hosts (a fresh host always costs 0);
* with every host in one zone, zones >= members_per_shard (and hosts too): distinct zones;
* fewer hosts than members: still placed, a shard's members spread over hosts within one of
  each other (the in-shard host count is the first criterion);
* per-host load within 1 of each other *inside a zone* (within a zone each shard adds one member
  to each of its least loaded hosts), hence overall when there is one zone or one host per zone.

Across zones of unequal size the load is NOT balanced: zone spread beats load (see
``test_zone_spread_beats_host_balance``), and even with equal zones the greedy can end up two
apart where a perfect placement exists (xfail below).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkube.model.members import FailureDomain
from redkube.planning.placing import place_members

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def layouts(draw: st.DrawFn, *, zones: str = "any") -> list[FailureDomain]:
    """Hosts, each in exactly one zone; ``zones``: "any" (random), "one", "per-host"."""
    hosts = [f"node-{i}" for i in range(draw(st.integers(1, 8)))]
    if zones == "one":
        return [FailureDomain(host, "zone-a") for host in hosts]
    if zones == "per-host":
        return [FailureDomain(host, f"zone-{host}") for host in hosts]
    zone_names = [f"zone-{c}" for c in "abcd"]
    domains = [FailureDomain(host, draw(st.sampled_from(zone_names))) for host in hosts]
    # Duplicates and order must not matter.
    return draw(st.permutations(domains + draw(st.lists(st.sampled_from(domains), max_size=3))))


shard_counts = st.integers(0, 24)
members_per_shard = st.integers(1, 6)


def host_loads(
    placement: dict[tuple[int, int], FailureDomain], domains: list[FailureDomain]
) -> list[int]:
    counts = Counter(domain.host for domain in placement.values())
    return [counts[host] for host in sorted({d.host for d in domains})]


@SETTINGS
@given(shards=shard_counts, members=members_per_shard, domains=layouts())
def test_every_member_is_placed_on_a_given_domain(
    shards: int, members: int, domains: list[FailureDomain]
) -> None:
    placement = place_members(shards, members, domains)
    assert set(placement) == {(s, o) for s in range(shards) for o in range(members)}
    assert set(placement.values()) <= set(domains)


@SETTINGS
@given(shards=shard_counts, members=members_per_shard, domains=layouts())
def test_members_of_a_shard_are_on_distinct_hosts_when_there_are_enough(
    shards: int, members: int, domains: list[FailureDomain]
) -> None:
    hosts = {d.host for d in domains}
    placement = place_members(shards, members, domains)
    for shard in range(shards):
        used = [placement[(shard, o)].host for o in range(members)]
        if len(hosts) >= members:
            assert len(set(used)) == members, used  # in particular no replica beside its master
        else:
            counts = Counter(used)
            assert set(counts) == hosts, "every host used before any is used twice"
            assert max(counts.values()) - min(counts.values()) <= 1, counts


@SETTINGS
@given(shards=shard_counts, members=members_per_shard, domains=layouts())
def test_members_of_a_shard_are_in_distinct_zones_when_there_are_enough(
    shards: int, members: int, domains: list[FailureDomain]
) -> None:
    zones = {d.zone for d in domains}
    hosts = {d.host for d in domains}
    placement = place_members(shards, members, domains)
    for shard in range(shards):
        used = [placement[(shard, o)].zone for o in range(members)]
        if len(zones) >= members and len(hosts) >= members:
            assert len(set(used)) == members, used
        elif len(zones) < members:
            assert set(used) == zones, "every zone used before any is used twice"


@SETTINGS
@given(
    shards=shard_counts,
    members=members_per_shard,
    domains=st.one_of(layouts(zones="one"), layouts(zones="per-host")),
)
def test_load_is_balanced_within_one_when_zones_do_not_constrain(
    shards: int, members: int, domains: list[FailureDomain]
) -> None:
    loads = host_loads(place_members(shards, members, domains), domains)
    assert max(loads) - min(loads) <= 1, loads
    assert sum(loads) == shards * members


@SETTINGS
@given(shards=shard_counts, members=members_per_shard, domains=layouts())
def test_load_is_balanced_within_one_inside_each_zone(
    shards: int, members: int, domains: list[FailureDomain]
) -> None:
    counts = Counter(d.host for d in place_members(shards, members, domains).values())
    by_zone: dict[str, set[str]] = defaultdict(set)
    for domain in domains:
        by_zone[domain.zone].add(domain.host)
    for zone, hosts in by_zone.items():
        loads = [counts[host] for host in hosts]
        assert max(loads) - min(loads) <= 1, (zone, loads)


def test_zone_spread_beats_host_balance() -> None:
    """Not balanced by design: a zone with a single host gets one member of every shard."""
    domains = [FailureDomain(f"node-{i}", "zone-a") for i in range(3)]
    domains.append(FailureDomain("lonely", "zone-b"))
    placement = place_members(6, 2, domains)
    for shard in range(6):
        assert {placement[(shard, o)].zone for o in range(2)} == {"zone-a", "zone-b"}
    loads = Counter(d.host for d in placement.values())
    assert loads["lonely"] == 6
    assert sorted(loads[f"node-{i}"] for i in range(3)) == [2, 2, 2]


def test_single_host_takes_everyone() -> None:
    placement = place_members(3, 3, [FailureDomain("only", "zone-a")])
    assert len(placement) == 9
    assert set(placement.values()) == {FailureDomain("only", "zone-a")}


def test_no_domains_is_an_error() -> None:
    with pytest.raises(ValueError, match="no failure domains"):
        place_members(3, 2, [])


def test_no_shards_places_nothing() -> None:
    assert place_members(0, 3, [FailureDomain("a", "z")]) == {}


def _master_hosts(shards: int, members: int, hosts: int) -> list[int]:
    domains = [FailureDomain(f"node-{i}", "zone-a") for i in range(hosts)]
    placement = place_members(shards, members, domains)
    counts = Counter(placement[(shard, 0)].host for shard in range(shards))
    return [counts[f"node-{i}"] for i in range(hosts)]


def test_first_masters_rotate_across_hosts_for_3x1_on_3_hosts() -> None:
    assert _master_hosts(3, 2, 3) == [1, 1, 1]


def test_first_masters_rotate_across_hosts_for_8x2_on_4_hosts() -> None:
    loads = _master_hosts(8, 3, 4)
    assert max(loads) - min(loads) <= 1, loads


@pytest.mark.xfail(
    strict=True,
    reason="LIMITATION (not a contract violation): with equal zones the greedy picks zones by "
    "per-shard spread only, so 3 zones x 2 hosts for 3 shards x 2 members leaves one host with "
    "2 members and one with none, though one member per host in distinct zones exists",
)
def test_equal_zones_can_be_perfectly_balanced() -> None:
    domains = [FailureDomain(f"node-{z}{i}", f"zone-{z}") for z in "abc" for i in range(2)]
    placement = place_members(3, 2, domains)
    assert host_loads(placement, domains) == [1] * 6
