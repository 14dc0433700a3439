"""Observing a cluster: every member's node asked in parallel, replies parsed into a NodeView."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.migrating import running_jobs, slot_migrations
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


async def observe(
    members: Sequence[Member], pool: ClientPool, config_keys: Sequence[str] = ()
) -> Observation:
    """Every member's node; ``config_keys``: settings to read from each (CONFIG GET)."""
    observed = await asyncio.gather(*(observe_member(member, pool) for member in members))
    open_slots = sorted(
        {
            slot
            for o in observed
            if o.view is not None
            for slot in (*o.view.myself.migrating, *o.view.myself.importing)
        }
    )
    detailed = await asyncio.gather(*(_details(o, open_slots, config_keys, pool) for o in observed))
    return Observation(tuple(detailed))


async def _details(
    observed: MemberObservation,
    open_slots: Sequence[int],
    config_keys: Sequence[str],
    pool: ClientPool,
) -> MemberObservation:
    """The settings asked for; and on a master, what it holds of slots left open anywhere (to
    finish or roll them back without losing a key) and its running atomic slot migrations
    (Valkey 9+)."""
    view = observed.view
    if view is None:
        return observed
    client = pool.client(view.address)
    try:
        config = await client.config_get(config_keys)
        if not view.myself.is_master:
            return dataclasses.replace(observed, view=dataclasses.replace(view, config=config))
        counts = await client.pipeline(("CLUSTER", "COUNTKEYSINSLOT", s) for s in open_slots)
        jobs = running_jobs(await slot_migrations(client)) if view.atomic_migration else ()
    except AdminError as error:
        return MemberObservation(observed.member, None, str(error))
    keys = {s: c for s, c in zip(open_slots, counts, strict=True) if isinstance(c, int) and c}
    return dataclasses.replace(
        observed,
        view=dataclasses.replace(view, open_slot_keys=keys, migrations=jobs, config=config),
    )


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
        maxmemory=int(info.get("maxmemory", "0") or 0),
        version=server_version(info),
        replicating_from=replicating_from(info),
        rewriting_aof=rewriting_aof(info),
        cluster_summary=cluster_summary(cluster_info),
        ops_per_sec=int(info.get("instantaneous_ops_per_sec", "0") or 0),
        connected_clients=int(info.get("connected_clients", "0") or 0),
    )


def cluster_summary(cluster_info: Mapping[str, str]) -> str:
    def field(name: str) -> str:
        return cluster_info.get(name, "?")

    return (
        f"slots ok {field('cluster_slots_ok')} of {field('cluster_slots_assigned')} assigned, "
        f"{field('cluster_size')} masters with slots, {field('cluster_known_nodes')} nodes known"
    )


def rewriting_aof(info: Mapping[str, str]) -> bool:
    """An AOF rewrite runs, or waits for a background save that runs (it starts when that ends).
    A rewrite scheduled with no child running is either starting within a cron tick or held back
    after failed rewrites (the server retries later, for up to an hour): waiting on that would
    stall the loop, and would not put the data on disk any sooner."""
    if info.get("aof_enabled") != "1":
        return False
    if info.get("aof_rewrite_in_progress") == "1":
        return True
    return info.get("aof_rewrite_scheduled") == "1" and info.get("rdb_bgsave_in_progress") == "1"
