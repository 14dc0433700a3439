"""Health: what is wrong with a cluster right now, derived from one observation."""

from __future__ import annotations

from dataclasses import dataclass

from redkube.model.actions import SetConfig
from redkube.model.members import MemberState
from redkube.model.nodes import NodeEntry, NodeView, Role
from redkube.model.observations import Observation
from redkube.model.slots import ALL_SLOTS, describe_ranges, ranges_of
from redkube.model.specs import ClusterSpec
from redkube.planning.resharding import Move, plan_moves
from redkube.planning.rolling import apply_live_settings


def claimed_slots(observation: Observation) -> frozenset[int]:
    """Slots that any node believes some node (alive or failed) serves."""
    claimed: set[int] = set()
    for view in observation.views():
        for entry in view.known:
            claimed |= entry.slots
    return frozenset(claimed)


def orphaned_masters(observation: Observation) -> list[NodeEntry]:
    """Entries (as any reachable node sees them) of masters holding slots that no reachable
    master serves: a master that is gone or unreachable, whose slots nobody has taken over."""
    views = list(observation.views())
    serving = {slot for view in views if view.myself.is_master for slot in view.myself.slots}
    return [
        entry
        for view in views
        for entry in view.others()
        if entry.is_master and entry.slots - serving
    ]


def stale_ids(observation: Observation) -> tuple[str, ...]:
    """Node IDs some member still knows that belong to no current member (a node that lost its
    data and came back with a new ID leaves its old ID behind)."""
    current = observation.member_ids()
    # We cannot know the ID of a member we cannot see; what sits at its address may be current.
    unseen = {o.member.address for o in observation.members if o.view is None}
    stale = {
        entry.node_id
        for view in observation.views()
        for entry in view.known
        if not entry.in_handshake and entry.node_id not in current and entry.address not in unseen
    }
    return tuple(sorted(stale))


def shard_views(spec: ClusterSpec, observation: Observation, shard: int) -> list[NodeView]:
    return [
        observed.view
        for observed in observation.members
        if observed.member.shard == shard and observed.view is not None
    ]


def shard_masters(spec: ClusterSpec, observation: Observation, shard: int) -> list[NodeView]:
    """Reachable members of the shard that are masters serving slots."""
    return [
        view
        for view in shard_views(spec, observation, shard)
        if view.myself.is_master and view.myself.slots
    ]


def shard_leader(spec: ClusterSpec, observation: Observation, shard: int) -> NodeView | None:
    """The master slots go to and from in a shard: its one master serving slots; in a new shard
    of the spec that serves none yet, its lowest-ordinal member that is an empty master (it
    receives slots; the others replicate it)."""
    masters = shard_masters(spec, observation, shard)
    if len(masters) == 1:
        return masters[0]
    if masters or shard >= spec.shards:
        return None
    empty = [
        (o.member.ordinal, o.view)
        for o in observation.members
        if o.member.shard == shard
        and o.view is not None
        and o.view.myself.is_master
        and not o.view.myself.slots
        and o.view.keys == 0
    ]
    return min(empty, key=lambda pair: pair[0])[1] if empty else None


def present_shards(spec: ClusterSpec, observation: Observation) -> range:
    """The spec's shards and any departing ones that still have members."""
    highest = max((o.member.shard for o in observation.members), default=-1)
    return range(max(spec.shards, highest + 1))


def resharding_plan(spec: ClusterSpec, observation: Observation) -> tuple[Move, ...]:
    """The slot moves still to make towards ``spec.shards`` balanced shards (none while a shard
    has two serving masters, or slots are unserved: healing comes first)."""
    held: dict[int, frozenset[int]] = {}
    for shard in present_shards(spec, observation):
        masters = shard_masters(spec, observation, shard)
        if len(masters) > 1:
            return ()
        held[shard] = masters[0].myself.slots if masters else frozenset()
    if sum(len(slots) for slots in held.values()) != len(ALL_SLOTS):
        return ()
    return plan_moves(held, spec.shards)


def open_slots(observation: Observation) -> tuple[str, ...]:
    found: list[str] = []
    for view in observation.views():
        for slot, target in sorted(view.myself.migrating.items()):
            found.append(f"slot {slot} migrating from {view.address} to {target[:8]}")
        for slot, source in sorted(view.myself.importing.items()):
            found.append(f"slot {slot} importing into {view.address} from {source[:8]}")
    return tuple(found)


def failing_flags(observation: Observation) -> tuple[str, ...]:
    """Current members that some other member flags as failing (fail or fail?)."""
    names = observation.names_by_id()
    found: list[str] = []
    for observed in observation.members:
        view = observed.view
        if view is None:
            continue
        for entry in view.others():
            if entry.node_id in names and (entry.failed or entry.suspected):
                found.append(f"{names[entry.node_id]} flagged failing by {observed.member.name}")
    return tuple(found)


@dataclass(frozen=True)
class ShardSummary:
    """One shard as observed: the member that is its one master serving slots (None when there
    is not exactly one), the members replicating it, and its slot ranges."""

    index: int
    master: str | None
    replicas: tuple[str, ...]
    slots: str


@dataclass(frozen=True)
class Health:
    problems: tuple[str, ...]
    masters: int
    linked_replicas: int
    shards: tuple[ShardSummary, ...] = ()
    # Members that run, are not terminating, report cluster_state:ok, and serve as their shard's
    # one master or as a linked replica of it.
    healthy_members: int = 0
    slots_to_move: int = 0
    # Members that run another revision than the spec's, and nodes whose live settings differ.
    outdated: int = 0
    unsettled: int = 0
    # For metrics: slots some master serves, slots left importing or migrating somewhere, and
    # shards whose one master has no linked replica (losing it loses the shard's slots).
    slots_covered: int = 0
    open_slots: int = 0
    masters_without_replica: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def assess(spec: ClusterSpec, observation: Observation) -> Health:
    problems: list[str] = []
    for observed in observation.members:
        member = observed.member
        if member.state is not MemberState.RUNNING:
            problems.append(f"{member.name} is {member.state.value}")
        elif member.terminating:
            problems.append(f"{member.name} is terminating")
        elif observed.view is None:
            problems.append(f"{member.name} unreachable: {observed.error or 'no address'}")
    uncovered = ALL_SLOTS - claimed_slots(observation)
    if uncovered:
        problems.append(
            f"{len(uncovered)} slots uncovered ({describe_ranges(ranges_of(uncovered))})"
        )
    problems.extend(open_slots(observation))
    problems.extend(failing_flags(observation))
    for node_id in stale_ids(observation):
        problems.append(f"stale node {node_id[:8]} still known")
    masters = 0
    linked = 0
    alone = 0
    name_of = observation.names_by_id()
    shards: list[ShardSummary] = []
    serving: set[str] = set()  # node IDs of one-master-per-shard masters and their linked replicas
    moving = sum(move.slots for move in resharding_plan(spec, observation))
    if moving:
        problems.append(f"resharding to {spec.shards} shards: {moving} slots to move")
    for observed in observation.members:
        if observed.member.shard >= spec.shards or observed.member.ordinal > spec.replicas:
            problems.append(f"{observed.member.name} departs (the spec has no place for it)")
    for shard in range(spec.shards):
        found = shard_masters(spec, observation, shard)
        if len(found) != 1:
            problems.append(f"shard {shard} has {len(found)} masters serving slots")
            shards.append(ShardSummary(shard, None, (), ""))
            continue
        masters += 1
        master = found[0]
        serving.add(master.node_id)
        followers: list[str] = []
        for view in shard_views(spec, observation, shard):
            if view is master:
                continue
            if view.myself.role is not Role.REPLICA or view.myself.master_id != master.node_id:
                problems.append(f"{view.address} is not a replica of shard {shard}'s master")
                continue
            followers.append(name_of[view.node_id])
            if not view.master_link_up:
                problems.append(f"{view.address} replication link down")
            else:
                linked += 1
                serving.add(view.node_id)
        if not any(
            view.myself.master_id == master.node_id and view.master_link_up
            for view in shard_views(spec, observation, shard)
        ):
            alone += 1
        slots = describe_ranges(ranges_of(master.myself.slots))
        shards.append(ShardSummary(shard, name_of[master.node_id], tuple(followers), slots))
    for view in observation.views():
        if not view.cluster_ok:
            problems.append(f"{view.address} reports cluster_state:fail")
    outdated = sum(1 for o in observation.members if o.member.outdated)
    if outdated:
        problems.append(f"{outdated} nodes run an old revision")
    settings = apply_live_settings(spec, observation)
    unsettled = 0
    if isinstance(settings, SetConfig):
        unsettled = len({address for address, _, _ in settings.assignments})
        problems.append(f"{unsettled} nodes have live settings that differ from the spec")
    healthy = sum(
        1
        for o in observation.members
        if o.member.running
        and not o.member.terminating
        and o.view is not None
        and o.view.cluster_ok
        and o.view.node_id in serving
    )
    return Health(
        tuple(problems),
        masters,
        linked,
        tuple(shards),
        healthy,
        moving,
        outdated,
        unsettled,
        slots_covered=len(ALL_SLOTS) - len(uncovered),
        open_slots=len(
            {slot for view in observation.views() for slot in view.myself.migrating}
            | {slot for view in observation.views() for slot in view.myself.importing}
        ),
        masters_without_replica=alone,
    )
