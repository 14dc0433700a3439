"""Rules for a change of shape: slots left open finished or rolled back, slots moved to the
wanted number of shards, and departing members retired once they hold nothing.

Level-triggered like every rule: the plan is made again from each observation, so a killed loop,
a failover mid-move or a change of mind half-way all resume from what the nodes say.
"""

from __future__ import annotations

from redkube.model.actions import (
    CloseSlots,
    MoveSlots,
    RetireMembers,
    SlotMove,
    Step,
    TellOwner,
    Wait,
)
from redkube.model.addresses import Address
from redkube.model.nodes import NodeView
from redkube.model.observations import Observation
from redkube.model.slots import ranges_of
from redkube.model.specs import ClusterSpec
from redkube.planning.assessing import resharding_plan, shard_leader
from redkube.planning.resharding import Move, first_slots
from redkube.planning.retiring import hand_over_departing

# Slots per (source, target) pair in one classic batch; then the loop observes again. Atomic
# jobs take a pair's whole move at once (the server pauses writes only at the end).
CLASSIC_BATCH_SLOTS = 1024


def _masters(observation: Observation) -> list[NodeView]:
    return [v for v in observation.views() if v.myself.is_master]


def repair_open_slots(spec: ClusterSpec, observation: Observation) -> Step:
    """A slot open (MIGRATING or IMPORTING) anywhere, left by a killed move (ours or
    redis-cli's) or a failover mid-move: if a master other than the owner holds keys of it, the
    move is finished towards that master (every key ends there); if none does, it is closed
    (nothing moved, every key is on the owner). Either way no key is dropped."""
    masters = _masters(observation)
    open_on: dict[int, list[NodeView]] = {}
    for view in observation.views():
        for slot in (*view.myself.migrating, *view.myself.importing):
            open_on.setdefault(slot, []).append(view)
    if not open_on:
        return None
    forward: dict[tuple[int, int], list[int]] = {}  # (owner index, holder index) -> slots
    close: dict[int, tuple[set[int], list[int]]] = {}  # owner index -> (others, slots)
    stale: dict[tuple[Address, str], list[int]] = {}  # (importer, owner ID) -> slots
    for slot in sorted(open_on):
        owners = [i for i, m in enumerate(masters) if slot in m.myself.slots]
        if len(owners) != 1:
            return Wait(f"slot {slot} is open and {len(owners)} reachable masters serve it")
        owner = owners[0]
        for importer in _stale_importers(open_on[slot], masters[owner], slot):
            stale.setdefault((importer.address, masters[owner].node_id), []).append(slot)
        holders = [i for i, m in enumerate(masters) if i != owner and m.open_slot_keys.get(slot, 0)]
        if len(holders) > 1:
            where = ", ".join(str(masters[i].address) for i in holders)
            return Wait(
                f"slot {slot} is open and its keys are on {where} besides its owner "
                f"{masters[owner].address}; refusing to choose (move them by hand)"
            )
        if holders:
            forward.setdefault((owner, holders[0]), []).append(slot)
        else:
            others, slots = close.setdefault(owner, (set(), []))
            others.update(i for i, m in enumerate(masters) if m in open_on[slot] and i != owner)
            slots.append(slot)
    if stale:
        (address, owner_id), slots = min(stale.items())
        return TellOwner(address, owner_id, tuple(slots))
    if forward:
        if (collision := _epoch_collision(observation)) is not None:
            return collision
        moves = tuple(
            SlotMove(
                masters[o].address,
                masters[o].node_id,
                masters[h].address,
                masters[h].node_id,
                ranges_of(slots),
            )
            for (o, h), slots in forward.items()
        )
        return MoveSlots(moves, atomic=False, masters=tuple(m.address for m in masters))
    owner, (others, slots) = min(close.items())
    return CloseSlots(
        masters[owner].address, tuple(masters[i].address for i in sorted(others)), tuple(slots)
    )


def reclaim_forgotten_slots(spec: ClusterSpec, observation: Observation) -> Step:
    """A master that does not claim slots every reachable node outside its shard says it serves,
    while no node claims them: its view is stale for good (gossip only moves a slot to a claim
    with a newer epoch, and nobody claims these). Its own replicas may share its view (Valkey
    replicates SETSLOT to them). Told that it serves them, it claims them again; no key moves."""
    views = list(observation.views())
    for master in views:
        if not master.myself.is_master:
            continue
        others = [v for v in views if v is not master and v.myself.master_id != master.node_id]
        seen = [v.entry(master.node_id) for v in others]
        if not others or any(entry is None for entry in seen):
            continue
        said = frozenset.intersection(*(entry.slots for entry in seen if entry is not None))
        forgotten = sorted(said - master.myself.slots)
        lost = [slot for slot in forgotten if not _claimed_by_other(views, master, slot)]
        if lost:
            return TellOwner(
                master.address, master.node_id, tuple(lost), "it forgot it serves them"
            )
    return None


def _claimed_by_other(views: list[NodeView], master: NodeView, slot: int) -> bool:
    return any(slot in v.myself.slots for v in views if v is not master)


def _stale_importers(views: list[NodeView], owner: NodeView, slot: int) -> list[NodeView]:
    """Nodes importing ``slot`` that know its owner but not as its owner. Such a node ignores
    gossip about the slot while it imports it, so its view stays stale for good."""
    stale: list[NodeView] = []
    for view in views:
        entry = view.entry(owner.node_id)
        if slot in view.myself.importing and entry is not None and slot not in entry.slots:
            stale.append(view)
    return stale


def wait_for_migrations(spec: ClusterSpec, observation: Observation) -> Step:
    """An atomic slot migration job still runs (a pass that started it ended, or the loop was
    restarted): the slots change owner when it ends, so nothing else moves meanwhile."""
    names = observation.names_by_id()
    for view in observation.views():
        if view.migrations:
            return Wait(f"slot migration on {names[view.node_id]}: {view.migrations[0]}")
    return None


def move_slots(spec: ClusterSpec, observation: Observation) -> Step:
    """Once the cluster is settled: the next batch of slot moves towards ``spec.shards``
    balanced shards (new shards receive, departing shards drain)."""
    plan = resharding_plan(spec, observation)
    if not plan:
        return None
    leaders: dict[int, NodeView] = {}
    for shard in {m.source for m in plan} | {m.target for m in plan}:
        leader = shard_leader(spec, observation, shard)
        if leader is None:
            return Wait(f"shard {shard} has no master to move slots with yet")
        leaders[shard] = leader
    refusal = _capacity_refusal(spec, observation, plan)
    if refusal is not None:
        return refusal
    collision = _epoch_collision(observation)
    if collision is not None:
        return collision
    masters = _masters(observation)
    atomic = all(m.atomic_migration for m in masters)
    # Every move at once: each slot is in one move only, and a source or target busy with two
    # moves is still faster than one after the other (MIGRATE waits on the target).
    batch = plan if atomic else tuple(first_slots(m, CLASSIC_BATCH_SLOTS) for m in plan)
    moves = tuple(
        SlotMove(
            leaders[m.source].address,
            leaders[m.source].node_id,
            leaders[m.target].address,
            leaders[m.target].node_id,
            m.ranges,
        )
        for m in batch
    )
    remaining = sum(m.slots for m in plan) - sum(m.slots for m in batch)
    return MoveSlots(moves, atomic, remaining, tuple(m.address for m in masters))


def _epoch_collision(observation: Observation) -> Step:
    """Two masters with the same config epoch: the servers settle it by giving the one with the
    lower node ID a new, highest epoch, at a time of their choosing. A source that takes a new
    highest epoch while a move hands its slots over would win them back from the target, and the
    target would drop the keys it received (Redis deletes the keys of a slot it loses to a newer
    epoch). So no slot moves until every master's epoch is its own (epoch 0, a master that never
    served a slot, takes a new one when it first does)."""
    names = observation.names_by_id()
    holders: dict[int, list[str]] = {}
    for view in _masters(observation):
        if view.myself.config_epoch:
            holders.setdefault(view.myself.config_epoch, []).append(names[view.node_id])
    for epoch, sharing in sorted(holders.items()):
        if len(sharing) > 1:
            return Wait(
                f"masters {', '.join(sorted(sharing))} share config epoch {epoch}; the servers "
                "give one of them a new epoch before slots move"
            )
    return None


def _capacity_refusal(
    spec: ClusterSpec, observation: Observation, plan: tuple[Move, ...]
) -> Wait | None:
    """A scale-in whose staying masters cannot hold the data under their maxmemory is refused
    before anything moves."""
    if not any(m.source >= spec.shards for m in plan):
        return None
    staying = [shard_leader(spec, observation, s) for s in range(spec.shards)]
    leaving = [shard_leader(spec, observation, m.source) for m in plan if m.source >= spec.shards]
    limits = [v.maxmemory for v in staying if v is not None]
    if not limits or 0 in limits:
        return None  # no limit on some staying master
    used = sum(v.used_memory for v in staying + leaving if v is not None)
    if used <= sum(limits):
        return None
    return Wait(
        f"refusing to scale in to {spec.shards} shards: the data ({used // 2**20} MiB) does not "
        f"fit the staying masters' maxmemory ({sum(limits) // 2**20} MiB); raise maxmemory or "
        "keep more shards"
    )


def retire_departing(spec: ClusterSpec, observation: Observation) -> Step:
    """Members the spec no longer has: a departing shard once no node holds a slot or a key of
    it; a departing replica ordinal once no master sits on it (a graceful failover first)."""
    for shard in sorted(
        {o.member.shard for o in observation.members if o.member.shard >= spec.shards}
    ):
        members = [o for o in observation.members if o.member.shard == shard]
        ids = {o.view.node_id for o in members if o.view is not None}
        claimed = any(
            entry.slots
            for view in observation.views()
            for entry in view.known
            if entry.node_id in ids
        )
        keys = sum(o.view.keys for o in members if o.view is not None)
        if claimed:
            continue  # move_slots drains it
        if keys:
            return Wait(
                f"departing shard {shard} serves no slot but its nodes hold {keys} keys; "
                "refusing to remove them (keys in slots they do not own: move them by hand)"
            )
        names = tuple(o.member.name for o in members)
        return RetireMembers(names, f"shard {shard} is drained (no slot, no key)")
    handing = hand_over_departing(observation, keep=spec.members_per_shard)
    if handing is not None:
        return handing
    extra = tuple(
        o.member.name for o in observation.members if o.member.ordinal >= spec.members_per_shard
    )
    if extra:
        return RetireMembers(extra, f"replicas per shard are now {spec.replicas}")
    return None
