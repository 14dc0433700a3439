"""Observing a cluster: every member's node asked in parallel, replies parsed into a NodeView."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.replies import (
    master_link_up,
    parse_cluster_nodes,
    parse_info,
    replicating_from,
    replication_offset,
    server_version,
)
from redkube.model.addresses import Address
from redkube.model.members import Member
from redkube.model.nodes import NodeView
from redkube.model.observations import MemberObservation, Observation


async def observe(members: Sequence[Member], pool: ClientPool) -> Observation:
    observed = await asyncio.gather(*(observe_member(member, pool) for member in members))
    return Observation(tuple(observed))


async def observe_member(member: Member, pool: ClientPool) -> MemberObservation:
    if member.address is None:
        return MemberObservation(member, None, "no address yet")
    if not member.running:
        return MemberObservation(member, None, member.state.value)
    try:
        view = await observe_node(member.address, pool)
    except AdminError as error:
        return MemberObservation(member, None, str(error))
    return MemberObservation(member, view)


async def observe_node(address: Address, pool: ClientPool) -> NodeView:
    nodes_text, cluster_info_text, info_text, keys = await pool.client(address).snapshot()
    entries = parse_cluster_nodes(nodes_text)
    myself = next((e for e in entries if e.myself), None)
    if myself is None:
        raise AdminError(f"{address}: CLUSTER NODES has no 'myself' line")
    info = parse_info(info_text)
    cluster_info = parse_info(cluster_info_text)
    return NodeView(
        address=address,
        myself=myself,
        known=entries,
        cluster_ok=cluster_info.get("cluster_state") == "ok",
        master_link_up=master_link_up(info),
        replication_offset=replication_offset(info),
        keys=keys,
        used_memory=int(info.get("used_memory", "0")),
        version=server_version(info),
        replicating_from=replicating_from(info),
    )
