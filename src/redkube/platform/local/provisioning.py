"""Deciding a new local cluster's members (names, fake hosts, loopback addresses), and new
addresses for nodes that start again when the cluster asks for them."""

from __future__ import annotations

from redkube.model.members import FailureDomain, member_name
from redkube.model.specs import ClusterSpec, SpecError
from redkube.planning.placing import place_members
from redkube.platform.local.addressing import allocate
from redkube.platform.local.layout import (
    ClusterLayout,
    ClusterRecord,
    MemberRecord,
    StateError,
    addresses_lock,
)


def local_domains(hosts: int) -> list[FailureDomain]:
    """Fake hosts ``host-1..N``; every host its own zone, like one node per zone."""
    if hosts < 1:
        raise SpecError(f"hosts must be at least 1 (got {hosts})")
    return [FailureDomain(f"host-{i + 1}", f"zone-{chr(ord('a') + i % 26)}") for i in range(hosts)]


def held_by_others(layout: ClusterLayout, strict: bool = True) -> list[str]:
    """Addresses other clusters' records hold. Not ``strict``: skip records that cannot be read
    (the probe for listeners still keeps a running node's address from being taken)."""
    held: list[str] = []
    for other in layout.other_clusters():
        try:
            held.extend(m.ip for m in other.load().members)
        except StateError:
            if strict:
                raise
    return held


def new_record(
    layout: ClusterLayout,
    spec: ClusterSpec,
    server: str,
    hosts: int,
    pool: str,
    new_address_on_restart: bool = False,
) -> ClusterRecord:
    """Call under addresses_lock."""
    placement = place_members(spec.shards, spec.members_per_shard, local_domains(hosts))
    allocated = allocate(spec.total_members, pool, held_by_others(layout))
    ips = iter(allocated)
    members = tuple(
        MemberRecord(
            name=member_name(spec.name, shard, ordinal),
            shard=shard,
            ordinal=ordinal,
            host=placement[(shard, ordinal)].host,
            zone=placement[(shard, ordinal)].zone,
            ip=next(ips),
        )
        for shard in range(spec.shards)
        for ordinal in range(spec.members_per_shard)
    )
    if not new_address_on_restart:
        return ClusterRecord(spec, server, members)
    return ClusterRecord(
        spec,
        server,
        members,
        new_address_on_restart=True,
        address_pool=pool,
        last_address=allocated[-1],
    )


def readdress(layout: ClusterLayout, record: ClusterRecord, names: list[str]) -> ClusterRecord:
    """Give the named members new addresses from the cluster's pool, none held by any cluster
    (this one included) nor in use, and save the record before anything starts on them."""
    if not names:
        return record
    assert record.address_pool is not None, "a cluster that readdresses records its pool"
    with addresses_lock(layout.root):
        taken = held_by_others(layout, strict=False) + [m.ip for m in record.members]
        ips = allocate(len(names), record.address_pool, taken, start_after=record.last_address)
        updated = record.with_ips(dict(zip(names, ips, strict=True)), last=ips[-1])
        layout.save(updated)
    return updated
