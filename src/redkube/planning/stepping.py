"""The next step: given what the user asked for and what we see, the one change to make now.

Rules are tried in order; the first that has something to say wins. Every rule is level-triggered:
it looks only at the current observation, so re-running after a crash picks up where we were.
Bootstrap ("create") only ever happens on nodes that hold no slots, no keys and know no peers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from redkube.model.actions import (
    AddSlots,
    Failover,
    FailoverMode,
    Forget,
    Meet,
    Replicate,
    Reset,
    SetConfigEpochs,
    StartMembers,
    Step,
    Wait,
)
from redkube.model.addresses import Address
from redkube.model.members import MemberState
from redkube.model.nodes import NodeView, Role
from redkube.model.observations import MemberObservation, Observation
from redkube.model.slots import ALL_SLOTS, SlotRange, ranges_of
from redkube.model.specs import ClusterSpec
from redkube.planning.allocating import allocate_slots
from redkube.planning.assessing import (
    claimed_slots,
    failing_flags,
    open_slots,
    orphaned_masters,
    present_shards,
    shard_leader,
    shard_masters,
    shard_views,
    stale_ids,
)
from redkube.planning.gossip import disagreement
from redkube.planning.reshaping import (
    move_slots,
    reclaim_forgotten_slots,
    repair_open_slots,
    retire_departing,
    wait_for_migrations,
)
from redkube.planning.rolling import apply_live_settings, replace_broken_outdated, roll_members
from redkube.planning.spreading import balanced, improving_chain

Rule = Callable[[ClusterSpec, Observation], Step]


def next_step(spec: ClusterSpec, observation: Observation) -> Step:
    """The single next action, a Wait, or None when the cluster matches the spec."""
    for rule in RULES:
        step = rule(spec, observation)
        if step is not None:
            return step
    return None


def replaced_ids(observation: Observation) -> set[str]:
    """Node IDs that are certainly gone: another node ID now answers at their address, or Redis
    marked them noaddr (which it does when a different ID answered there)."""
    answering = {view.address: view.node_id for view in observation.views()}
    current = observation.member_ids()
    return {
        entry.node_id
        for view in observation.views()
        for entry in view.others()
        if entry.node_id not in current
        and (
            entry.address is None
            or (entry.address in answering and answering[entry.address] != entry.node_id)
        )
    }


def fail_over_dead_masters(spec: ClusterSpec, observation: Observation) -> Step:
    """A master is certainly dead (the platform saw it die, another ID answers at its address,
    or it is no member any more and the cluster flags it failed, as after a scale-in that removed
    it before it could hand over): promote its best replica now, before anything restarts it (a
    restarted master with lost writes would make its replicas resync from it and drop
    acknowledged writes)."""
    views = list(observation.views())
    masters = {
        entry.node_id for view in views for entry in view.known if entry.is_master and entry.slots
    }
    alive_masters = {view.node_id for view in views if view.myself.is_master and view.myself.slots}
    stopped = {o.member.address: o.member.name for o in observation.members if not o.member.running}
    replaced = replaced_ids(observation)
    member_addresses = observation.member_addresses()
    dead: dict[str, str] = {}
    for entry in orphaned_masters(observation):
        if entry.address in stopped and entry.address is not None:
            dead[entry.node_id] = f"{stopped[entry.address]} died while master"
        elif entry.node_id in replaced:
            dead[entry.node_id] = f"master {entry.node_id[:8]} was replaced by a new node"
        elif entry.failed and entry.address not in member_addresses:
            dead[entry.node_id] = (
                f"master {entry.node_id[:8]} at {entry.address} is no member any more and the "
                "cluster flags it failed"
            )
    for dead_id, why in sorted(dead.items()):
        candidates = [
            view
            for view in views
            if view.myself.role is Role.REPLICA and view.myself.master_id == dead_id
        ]
        if not candidates:
            continue
        best = max(candidates, key=lambda v: (v.replication_offset, str(v.address)))
        # An election needs a majority of masters that the replica can reach over the bus: after
        # every Pod restarted with new IPs it knows them only at their old addresses, and a
        # FORCE would only time out before the TAKEOVER it comes to anyway.
        voters = [view for view in views if view.node_id in alive_masters and _reaches(best, view)]
        majority_alive = 2 * len(alive_masters) > len(masters) and 2 * len(voters) > len(masters)
        mode = FailoverMode.FORCE if majority_alive else FailoverMode.TAKEOVER
        reason = f"{why}; promoting the replica with the highest offset"
        return Failover(best.address, mode, reason, certain=True)
    return None


def _reaches(source: NodeView, target: NodeView) -> bool:
    """Whether ``source`` knows ``target`` at its current address and does not flag it failed."""
    entry = source.knows_at(target)
    return entry is not None and not entry.failed


def start_stopped_members(spec: ClusterSpec, observation: Observation) -> Step:
    """Start what is stopped, except a dead master whose shard-mates are down too: they start
    first and must answer, so its replica is promoted before the master returns (if its volume
    was lost, a replica that met the empty master first would resync from it and drop its
    data)."""
    unserved_masters = {entry.address for entry in orphaned_masters(observation)}
    # Down or not answering yet: a replica still loading its data answers LOADING for a while.
    unseen = [o.member for o in observation.members if o.view is None]
    startable = tuple(
        member.name
        for member in unseen
        if member.state is MemberState.STOPPED
        and not (
            member.address in unserved_masters
            and any(other.shard == member.shard and other is not member for other in unseen)
        )
    )
    if startable:
        return StartMembers(startable)
    return None


def wait_for_members(spec: ClusterSpec, observation: Observation) -> Step:
    for observed in observation.members:
        member = observed.member
        if member.state is MemberState.BACKOFF:
            return Wait(
                f"{member.name} crashed repeatedly; the platform backs off before restarting"
            )
    lost: dict[str, list[str]] = {}
    for observed in observation.members:
        if observed.view is None and observed.member.host_lost:
            lost.setdefault(observed.member.domain.host, []).append(observed.member.name)
    if lost:
        return Wait(
            "; ".join(
                f"{host} is NotReady: {', '.join(names)} there cannot be reached"
                for host, names in sorted(lost.items())
            )
        )
    for observed in observation.members:
        if observed.view is None:
            member = observed.member
            return Wait(f"{member.name} is not answering yet ({observed.error or 'no address'})")
    return None


def bootstrap(spec: ClusterSpec, observation: Observation) -> Step:
    """On a brand-new cluster: distinct config epochs, then each shard's slots to one member
    chosen so that the masters spread over hosts (no failover needed to spread them later)."""
    views = list(observation.views())
    if not all(v.alone and not v.myself.slots and v.keys == 0 for v in views):
        return None
    allocation = allocate_slots(spec.shards)
    firsts = _first_masters(spec, observation)
    epochs = tuple(
        (o.view.address, o.member.shard + 1)
        for o in firsts
        if o.view is not None and o.view.myself.config_epoch == 0
    )
    if epochs:
        return SetConfigEpochs(epochs)
    return AddSlots(
        tuple((o.view.address, (allocation[o.member.shard],)) for o in firsts if o.view is not None)
    )


def _first_masters(spec: ClusterSpec, observation: Observation) -> list[MemberObservation]:
    """One member per shard to take its slots at bootstrap: a member that already has a config
    epoch (a bootstrap half done), else one on a host chosen so that the masters spread as well
    as the placement allows (planning.spreading), the lowest ordinal there."""
    candidates: dict[int, list[MemberObservation]] = {}
    for shard in range(spec.shards):
        found = [o for o in observation.members if o.member.shard == shard and o.view is not None]
        started = [o for o in found if o.view is not None and o.view.myself.config_epoch]
        if found:
            candidates[shard] = sorted(started or found, key=lambda o: o.member.ordinal)
    greedy: dict[int, str] = {}
    per_host: Counter[str] = Counter()
    for shard, found in candidates.items():
        pick = min(found, key=lambda o: (per_host[o.member.domain.host], o.member.ordinal))
        per_host[pick.member.domain.host] += 1
        greedy[shard] = pick.member.domain.host
    options = {shard: {o.member.domain.host for o in found} for shard, found in candidates.items()}
    hosts = balanced(greedy, options)
    return [
        next(o for o in found if o.member.domain.host == hosts[shard])
        for shard, found in candidates.items()
    ]


def reset_foreign_nodes(spec: ClusterSpec, observation: Observation) -> Step:
    """A member whose peers are all strangers carries another cluster's config (a reused volume,
    a copied nodes.conf). Meeting it would gossip that cluster's nodes and slots into ours, so an
    empty one is reset first; one that holds data is left alone and reported."""
    member_ids = observation.member_ids()
    member_addresses = observation.member_addresses()
    if len(member_ids) < 2:
        # One member alone has nobody to gossip strangers to: what it knows beyond itself can
        # only be stale (a one-shard cluster whose replicas were scaled in), forgotten later.
        return None
    for observed in observation.members:
        view = observed.view
        if view is None:
            continue
        peers = view.others()
        # A stale ID of one of ours sits at a member's address, or at none once Redis has seen
        # another ID answer there (noaddr); only a peer at an address not ours is a stranger.
        strangers = [
            peer
            for peer in peers
            if peer.address is not None and peer.address not in member_addresses
        ]
        if not strangers or any(peer.node_id in member_ids for peer in peers):
            continue
        name = observed.member.name
        if view.keys or view.myself.slots:
            return Wait(
                f"{name} belongs to another cluster ({len(strangers)} unknown peers) and holds "
                f"{view.keys} keys; refusing to reset it: move its data away or wipe it"
            )
        return Reset(view.address, f"{name} is empty but knows only another cluster's nodes")
    return None


def meet(spec: ClusterSpec, observation: Observation) -> Step:
    """Every member must know every other member at its current address (pods get new IPs).

    Members that share history (one knows the other's node ID, or both know a third member) are
    one cluster, however stale their views: after every Pod restarted at once, a master that went
    down before hearing of its replica's promotion still claims its old slots. Redis settles such
    claims by config epoch once they talk, so they are introduced. Only a node with no member ID
    in common with the source that claims slots the source sees served (another cluster's node)
    is refused. A node ID this loop forgot is refused by Valkey for a while (FORGET's ban): the
    loop waits for the ban to end rather than meet in vain."""
    views = list(observation.views())
    member_ids = observation.member_ids()
    names = observation.names_by_id()
    pairs: list[tuple[Address, Address]] = []
    for source in views:
        for target in views:
            if target is source:
                continue
            if source.knows_at(target) is not None:
                continue
            if not _share_history(source, target, member_ids):
                claimed_by_others = {
                    slot for e in source.known if e.node_id != target.node_id for slot in e.slots
                }
                if target.myself.slots & claimed_by_others:
                    return Wait(
                        f"{target.address} claims slots that {source.address} sees served by "
                        "others and shares no node with it (another cluster?); refusing to merge "
                        "them"
                    )
            if target.node_id in observation.banned:
                return Wait(
                    f"{names[target.node_id]} ({target.node_id[:8]}) was forgotten recently; "
                    f"the servers refuse it for {observation.banned[target.node_id]:.0f}s more "
                    "(FORGET ban) before a meet"
                )
            pairs.append((source.address, target.address))
    if pairs:
        return Meet(tuple(pairs))
    return None


def _share_history(source: NodeView, target: NodeView, member_ids: frozenset[str]) -> bool:
    """Whether two nodes have a current member in common among the IDs they know (themselves
    included): nodes of one cluster do, another cluster's node does not."""
    known_by_source = {entry.node_id for entry in source.known}
    known_by_target = {entry.node_id for entry in target.known}
    return bool(known_by_source & known_by_target & member_ids)


def assign_uncovered_slots(spec: ClusterSpec, observation: Observation) -> Step:
    uncovered = ALL_SLOTS - claimed_slots(observation)
    if not uncovered:
        return None
    allocation = allocate_slots(spec.shards)
    assignments: list[tuple[Address, tuple[SlotRange, ...]]] = []
    for shard, shard_range in enumerate(allocation):
        missing = uncovered & frozenset(shard_range.slots())
        if not missing:
            continue
        target = _slot_target(spec, observation, shard)
        if target is None:
            return Wait(f"no node of shard {shard} can take its uncovered slots yet")
        assignments.append((target.address, ranges_of(missing)))
    return AddSlots(tuple(assignments))


def _slot_target(spec: ClusterSpec, observation: Observation, shard: int) -> NodeView | None:
    masters = shard_masters(spec, observation, shard)
    if masters:
        return masters[0]
    empty = [v for v in shard_views(spec, observation, shard) if v.myself.is_master and v.keys == 0]
    return empty[0] if empty else None


def _master_claim(observation: Observation, master: NodeView) -> str:
    """How one of two masters claiming a shard's slots stands, for the status and the log:
    its config epoch and how many other nodes see it as the owner of its first slot (what
    settles such a conflict, or tells a human which one the cluster follows)."""
    name = observation.names_by_id().get(master.node_id, str(master.address))
    first = min(master.myself.slots)
    others = [v for v in observation.views() if v.node_id != master.node_id]
    agreeing = sum(
        1
        for view in others
        if (entry := view.entry(master.node_id)) is not None and first in entry.slots
    )
    return (
        f"{name} (epoch {master.myself.config_epoch}, {len(master.myself.slots)} slots, owner "
        f"of slot {first} for {agreeing} of {len(others)} other nodes)"
    )


def attach_replicas(spec: ClusterSpec, observation: Observation) -> Step:
    """Every member of a shard follows its master (a new shard's receiving master before it
    has slots)."""
    assignments: list[tuple[Address, str]] = []
    for shard in present_shards(spec, observation):
        masters = shard_masters(spec, observation, shard)
        if len(masters) > 1:
            return Wait(
                f"shard {shard} has {len(masters)} masters serving slots: "
                + "; ".join(_master_claim(observation, m) for m in masters)
            )
        master = shard_leader(spec, observation, shard)
        if master is None:
            continue
        for view in shard_views(spec, observation, shard):
            if view is master:
                continue
            if view.myself.master_id == master.node_id and view.replicating_from in (
                None,
                master.address,
            ):
                continue
            # Not following it yet, or following it at an address it left: Redis 7.0 updates a
            # master's address learned by gossip in the cluster table but not the replication
            # link, which then points at the old IP for ever. REPLICATE again re-points it.
            known = view.knows_at(master)
            if known is None or known.in_handshake:
                continue
            assignments.append((view.address, master.node_id))
    if assignments:
        return Replicate(tuple(assignments))
    return None


def forget_stale_nodes(spec: ClusterSpec, observation: Observation) -> Step:
    """Forget node IDs no member has any more, on every node at once (those that may not be
    forgotten yet are waited for by ``wait_for_stale_nodes``, once nothing else is waited on)."""
    forget, _ = _stale_nodes(observation)
    return forget


def wait_for_stale_nodes(spec: ClusterSpec, observation: Observation) -> Step:
    _, blocked = _stale_nodes(observation)
    if blocked:
        return Wait(blocked[0] + (f", and {len(blocked) - 1} more" if len(blocked) > 1 else ""))
    return None


def _stale_nodes(observation: Observation) -> tuple[Forget | None, list[str]]:
    """The first stale ID that may be forgotten, and why the others may not: an ID is kept while
    a replica follows it (it is re-attached first) or while it owns slots that no member serves
    and it was not replaced at a member's address (its data may be the only copy: a failover,
    or its return, comes first)."""
    views = list(observation.views())
    member_addresses = observation.member_addresses()
    served = {slot for view in views if view.myself.is_master for slot in view.myself.slots}
    blocked: list[str] = []
    for node_id in stale_ids(observation):
        if any(view.myself.master_id == node_id for view in views):
            blocked.append(f"a member still replicates stale node {node_id[:8]}")
            continue
        entries = list(observation.entries_about(node_id))
        owned = {slot for entry in entries for slot in entry.slots}
        replaced = all(entry.failed and entry.address in member_addresses for entry in entries)
        if owned - served and not replaced:
            where = next((str(e.address) for e in entries if e.address is not None), "no address")
            blocked.append(
                f"stale node {node_id[:8]} (last at {where}) owns {len(owned - served)} slots no "
                "member serves; it is kept until a replica takes them over or it comes back"
            )
            continue
        on = tuple(view.address for view in views if view.entry(node_id) is not None)
        return Forget(node_id, on), blocked
    return None, blocked


def wait_for_settling(spec: ClusterSpec, observation: Observation) -> Step:
    for observed in observation.members:
        if observed.member.terminating:
            return Wait(f"{observed.member.name} is terminating")
    names = {o.view.address: o.member.name for o in observation.members if o.view is not None}
    for view in observation.views():
        if view.myself.role is Role.REPLICA and not view.master_link_up:
            return Wait(f"{names[view.address]} is syncing from its master")
        if view.myself.role is Role.REPLICA and view.rewriting_aof:
            # Its data is not on disk yet (see NodeView.rewriting_aof): nothing by choice (a
            # failover, a restart, a move) until it is.
            return Wait(f"{names[view.address]} is writing its synced data to disk (AOF)")
    for problem in open_slots(observation) + failing_flags(observation):
        return Wait(problem)
    for view in observation.views():
        if not view.cluster_ok:
            why = f" ({view.cluster_summary})" if view.cluster_summary else ""
            return Wait(f"{names[view.address]} does not report cluster_state:ok yet{why}")
    for shard in range(spec.shards):
        if shard_leader(spec, observation, shard) is None:
            return Wait(f"shard {shard} has no master serving slots")
    return None


def spread_masters(spec: ClusterSpec, observation: Observation) -> Step:
    """Once all is well: masters spread over hosts, so that losing one host loses as few masters
    as possible. Failovers (and the scheduler, on Kubernetes) can crowd masters on one host;
    then linked replicas take over, by graceful failovers (no write lost), one at a time, along
    the improving chain of planning.spreading, whose moves end."""
    members = {o.view.node_id: o.member for o in observation.members if o.view is not None}
    masters: dict[int, NodeView] = {}
    for shard in range(spec.shards):
        found = shard_masters(spec, observation, shard)
        if len(found) != 1:
            return None
        masters[shard] = found[0]
    replicas: dict[int, list[NodeView]] = {
        shard: [
            view
            for view in shard_views(spec, observation, shard)
            if view.myself.master_id == master.node_id and view.master_link_up
        ]
        for shard, master in masters.items()
    }
    hosts = {shard: members[master.node_id].domain.host for shard, master in masters.items()}
    options = {
        shard: {members[view.node_id].domain.host for view in views}
        for shard, views in replicas.items()
    }
    chain = improving_chain(hosts, options)
    if chain is None:
        return None
    gossip = disagreement(observation)
    if gossip is not None:
        return Wait(gossip)
    crowded = hosts[chain[0][0]]
    shard, host = chain[-1]
    replica = max(
        (view for view in replicas[shard] if members[view.node_id].domain.host == host),
        key=lambda view: view.replication_offset,
    )
    crowd = sum(1 for other in hosts.values() if other == crowded)
    steps = f" (the first of {len(chain)} moves)" if len(chain) > 1 else ""
    return Failover(
        replica.address,
        FailoverMode.DEFAULT,
        f"spreading masters: {crowded} serves {crowd} of them; "
        f"{members[replica.node_id].name} on {host} takes over shard {shard}{steps}",
    )


RULES: tuple[Rule, ...] = (
    fail_over_dead_masters,
    start_stopped_members,
    replace_broken_outdated,
    wait_for_members,
    reset_foreign_nodes,
    bootstrap,
    meet,
    assign_uncovered_slots,
    attach_replicas,
    forget_stale_nodes,
    wait_for_migrations,
    repair_open_slots,
    reclaim_forgotten_slots,
    wait_for_settling,
    wait_for_stale_nodes,
    move_slots,
    retire_departing,
    apply_live_settings,
    roll_members,
    spread_masters,
)
