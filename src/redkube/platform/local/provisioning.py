"""Deciding a new local cluster's members (names, fake hosts, loopback addresses), and new
addresses for nodes that start again when the cluster asks for them."""

from __future__ import annotations

from dataclasses import replace

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
        _member(spec, shard, ordinal, placement[(shard, ordinal)], next(ips))
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


def _member(
    spec: ClusterSpec, shard: int, ordinal: int, domain: FailureDomain, ip: str
) -> MemberRecord:
    name = member_name(spec.name, shard, ordinal)
    return MemberRecord(name, shard, ordinal, domain.host, domain.zone, ip)


def reshaped_record(
    layout: ClusterLayout, record: ClusterRecord, spec: ClusterSpec, pool: str
) -> ClusterRecord:
    """The record for a new shape (more or fewer shards or replicas): members the new spec adds
    get a place and an address; members it drops stay until the loop has drained and retired
    them. Call under addresses_lock."""
    present = {(m.shard, m.ordinal) for m in record.members}
    wanted = [
        (shard, ordinal)
        for shard in range(spec.shards)
        for ordinal in range(spec.members_per_shard)
        if (shard, ordinal) not in present
    ]
    if not wanted:
        return replace(record, spec=spec)
    hosts = sorted({(m.host, m.zone) for m in record.members})
    domains = [FailureDomain(host, zone) for host, zone in hosts]
    placement = place_members(spec.shards, spec.members_per_shard, domains)
    taken = held_by_others(layout) + [m.ip for m in record.members]
    ips = allocate(len(wanted), record.address_pool or pool, taken, record.last_address)
    added = tuple(
        _member(spec, shard, ordinal, placement[(shard, ordinal)], ip)
        for (shard, ordinal), ip in zip(wanted, ips, strict=True)
    )
    last = ips[-1] if record.new_address_on_restart else record.last_address
    return replace(record, spec=spec, members=record.members + added, last_address=last)


def without_members(layout: ClusterLayout, names: set[str]) -> ClusterRecord:
    """Drop retired members from the saved record (read again under the lock: `redkube up` may
    have written a new shape meanwhile)."""
    with addresses_lock(layout.root):
        record = layout.load()
        updated = replace(record, members=tuple(m for m in record.members if m.name not in names))
        layout.save(updated)
    return updated
