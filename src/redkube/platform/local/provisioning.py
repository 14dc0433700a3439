"""Deciding a new local cluster's members: names, fake hosts, loopback addresses."""

from __future__ import annotations

from redkube.model.members import FailureDomain, member_name
from redkube.model.specs import ClusterSpec, SpecError
from redkube.planning.placing import place_members
from redkube.platform.local.addressing import allocate
from redkube.platform.local.layout import ClusterLayout, ClusterRecord, MemberRecord


def local_domains(hosts: int) -> list[FailureDomain]:
    """Fake hosts ``host-1..N``; every host its own zone, like one node per zone."""
    if hosts < 1:
        raise SpecError(f"hosts must be at least 1 (got {hosts})")
    return [FailureDomain(f"host-{i + 1}", f"zone-{chr(ord('a') + i % 26)}") for i in range(hosts)]


def new_record(
    layout: ClusterLayout, spec: ClusterSpec, server: str, hosts: int, pool: str
) -> ClusterRecord:
    placement = place_members(spec.shards, spec.members_per_shard, local_domains(hosts))
    taken = [m.ip for other in layout.other_clusters() for m in other.load().members]
    ips = iter(allocate(spec.total_members, pool, taken))
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
    return ClusterRecord(spec, server, members)
