"""A tiny Redis Cluster simulator: applies planning's actions to a plain-data ``Cluster``.

Each action is applied the way Redis (or the platform) would, and refused (``Refused``) where
Redis would answer with an error, so a plan that Redis would reject fails the test:

* SET-CONFIG-EPOCH only on a node that knows nobody and has epoch 0;
* ADDSLOTS only on a master, only for slots unassigned in that node's own view;
* MEET makes both nodes know each other; masters that can talk and claim the same slots settle
  them by config epoch (the lower epoch loses them and, left without slots, follows the winner);
* REPLICATE only towards a known master, and a master only if it has no slots and no keys;
  the replication link comes up on the next ``Wait``;
* FAILOVER FORCE only completes with a majority of slot-serving masters alive (they vote);
  TAKEOVER always completes; the replica takes its master's slots and its sibling replicas;
* FORGET not of oneself nor of one's own master, only of a known node;
* a Wait lets time pass: replication links come up, unreachable members answer again, nodes that
  can reach each other catch up on each other's news.

Redis' own automatic failover is deliberately not modelled: planning must not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from redkube.model.actions import (
    AddSlots,
    Failover,
    FailoverMode,
    Forget,
    Meet,
    Replicate,
    Reset,
    RestartMembers,
    SetConfig,
    SetConfigEpochs,
    StartMembers,
    Step,
    Wait,
)
from redkube.model.members import MemberState
from redkube.model.slots import slots_of
from redkube.planning.stepping import next_step
from tests.planning.builders import Cluster, Node


class Refused(AssertionError):
    """Redis (or the platform) would reject this action."""


def apply(cluster: Cluster, step: Step) -> None:
    match step:
        case None:
            return
        case Wait():
            _tick(cluster)
        case StartMembers(names):
            for name in names:
                _start(cluster, name)
        case SetConfigEpochs(epochs):
            for address, epoch in epochs:
                node = cluster.node_at(address)
                if node.known or node.epoch != 0:
                    raise Refused(f"SET-CONFIG-EPOCH on {address}: node knows others or has one")
                node.epoch = epoch
        case AddSlots(assignments):
            for address, ranges in assignments:
                _add_slots(cluster, cluster.node_at(address), slots_of(ranges))
        case Meet(pairs):
            for source_address, target_address in pairs:
                source = cluster.node_at(source_address)
                target = cluster.node_at(target_address)
                if source is target:
                    raise Refused(f"MEET {target_address} on itself")
                source.known.add(target.node_id)
                target.known.add(source.node_id)
                source.opinions.pop(target.node_id, None)
                target.opinions.pop(source.node_id, None)
                source.seen_at.pop(target.node_id, None)
                target.seen_at.pop(source.node_id, None)
                source.beliefs.pop(target.node_id, None)
                target.beliefs.pop(source.node_id, None)
            _settle_claims(cluster)
        case Replicate(assignments):
            for address, master_id in assignments:
                _replicate(cluster, cluster.node_at(address), master_id)
        case Failover(replica_address, mode, _reason):
            _failover(cluster, cluster.node_at(replica_address), mode)
        case Forget(node_id, on):
            for address in on:
                node = cluster.node_at(address)
                if node.node_id == node_id:
                    raise Refused(f"FORGET {node_id[:8]} on itself")
                if node.master_id == node_id:
                    raise Refused(f"FORGET {node_id[:8]} on its own replica {address}")
                if node_id not in node.known:
                    raise Refused(f"FORGET {node_id[:8]} on {address}, which does not know it")
                node.known.discard(node_id)
                node.opinions.pop(node_id, None)
        case SetConfig(assignments):
            for address, key, value in assignments:
                cluster.node_at(address).config[key] = value
        case Reset(address, _reason):
            # CLUSTER RESET SOFT: refused on a master with keys; the node forgets every peer
            # and its slots, and a replica becomes an empty master (same id and epoch).
            node = cluster.node_at(address)
            if node.keys and node.master_id is None:
                raise Refused(f"CLUSTER RESET on {address}, a master holding keys")
            node.known.clear()
            node.opinions.clear()
            node.seen_at.clear()
            node.beliefs.clear()
            node.slots = frozenset()
            node.migrating.clear()
            node.importing.clear()
            node.master_id, node.link_up, node.keys = None, False, 0
        case RestartMembers(names):
            for name in names:
                _restart(cluster, name)
        case _:
            raise AssertionError(f"unexpected step {step!r}")


def _restart(cluster: Cluster, name: str) -> None:
    """The platform restarts the member on the revision it should run: same node ID and data
    (its volume stays); a replica's link is down until the next tick. A master restarted while
    a replica follows it would be a failover-less restart: refused, the rules must not do it."""
    seat = cluster.seat_named(name)
    node = cluster.nodes[seat.node_id]
    if node.is_master and any(
        other.master_id == node.node_id and other.alive for other in cluster.current_nodes()
    ):
        raise Refused(f"restart of master {name} while a replica follows it (no failover)")
    if seat.target_revision is None:
        raise Refused(f"restart of {name} before its target revision is known")
    seat.revision = seat.target_revision
    seat.state = MemberState.RUNNING
    node.alive = True
    if not node.is_master:
        node.link_up = False


def _tick(cluster: Cluster) -> None:
    for seat in cluster.seats:
        seat.error = None
    for node in cluster.current_nodes():
        # Failure detection catches up: suspicions about live nodes it can reach clear, and it
        # hears their news.
        for node_id in [i for i in node.opinions if _reaches(cluster, node, i)]:
            del node.opinions[node_id]
        for node_id in [i for i in node.beliefs if _reaches(cluster, node, i)]:
            del node.beliefs[node_id]
    _settle_claims(cluster)
    for node in cluster.current_nodes():
        if node.master_id is None or not node.alive:
            continue
        master = cluster.nodes[node.master_id]
        if master.alive and master.is_master:
            node.link_up = True
            node.keys = master.keys
            node.offset = master.offset


def _reaches(cluster: Cluster, node: Node, node_id: str) -> bool:
    other = cluster.nodes[node_id]
    return other.alive and node.seen_at.get(node_id, other.address) == other.address


def _settle_claims(cluster: Cluster) -> None:
    """Two live masters that can talk and claim the same slots: Redis keeps the claim with the
    higher config epoch (UPDATE messages); a master left without slots becomes a replica of the
    node that took its last slot."""
    settled = False
    while not settled:
        settled = True
        masters = [n for n in cluster.current_nodes() if n.alive and n.is_master and n.slots]
        for a in masters:
            for b in masters:
                talk = (b.node_id in a.known and _reaches(cluster, a, b.node_id)) or (
                    a.node_id in b.known and _reaches(cluster, b, a.node_id)
                )
                if a is b or not talk or not a.slots & b.slots or a.epoch >= b.epoch:
                    continue
                a.slots = a.slots - b.slots
                if not a.slots:
                    a.master_id = b.node_id
                    a.link_up = False
                settled = False
                break
            if not settled:
                break


def _start(cluster: Cluster, name: str) -> None:
    seat = cluster.seat_named(name)
    if seat.state is MemberState.RUNNING:
        raise Refused(f"start {name}: already running")
    seat.state = MemberState.RUNNING
    node = cluster.nodes[seat.node_id]
    if seat.wipe_on_start:
        seat.wipe_on_start = False
        seat.node_id = cluster.new_node(seat.address).node_id
        return
    node.alive = True
    if node.rejoin_as_replica_of is not None:
        # It finds its slots served with a newer epoch: Redis turns it into a replica.
        node.master_id = node.rejoin_as_replica_of
        node.rejoin_as_replica_of = None
        node.slots = frozenset()
        node.link_up = False


def _add_slots(cluster: Cluster, node: Node, slots: frozenset[int]) -> None:
    if not node.is_master:
        raise Refused(f"ADDSLOTS on replica {node.address}")
    if not slots:
        raise Refused(f"ADDSLOTS with no slots on {node.address}")
    busy = set(node.slots)
    for node_id in node.known:
        busy |= cluster.nodes[node_id].slots
    if slots & busy:
        raise Refused(f"ADDSLOTS on {node.address}: slot {min(slots & busy)} is already busy")
    node.slots = node.slots | slots


def _replicate(cluster: Cluster, node: Node, master_id: str) -> None:
    if master_id == node.node_id:
        raise Refused(f"REPLICATE {node.address} to itself")
    if master_id not in node.known:
        raise Refused(f"REPLICATE on {node.address}: unknown node {master_id[:8]}")
    master = cluster.nodes[master_id]
    if not master.is_master:
        raise Refused(f"REPLICATE on {node.address}: {master_id[:8]} is a replica")
    if node.is_master and (node.slots or node.keys):
        raise Refused(f"REPLICATE on {node.address}: a master must be empty and without slots")
    node.master_id = master_id
    node.link_up = False


def majority_alive(cluster: Cluster) -> bool:
    """Whether a majority of the slot-serving masters (dead ones included) could vote."""
    masters = [
        node
        for node in cluster.nodes.values()
        if node.is_master and node.slots and _remembered(cluster, node)
    ]
    alive = [node for node in masters if node.alive]
    return 2 * len(alive) > len(masters)


def _remembered(cluster: Cluster, node: Node) -> bool:
    return node.alive or any(knower.alive for knower in cluster.knowers(node.node_id))


def _failover(cluster: Cluster, replica: Node, mode: FailoverMode) -> None:
    if replica.is_master:
        raise Refused(f"FAILOVER on master {replica.address}")
    master = cluster.nodes[replica.master_id or ""]
    if mode is FailoverMode.DEFAULT and not master.alive:
        return  # a default failover needs the master's cooperation: nothing happens
    if mode is FailoverMode.FORCE and not majority_alive(cluster):
        return  # the election never reaches a majority: nothing happens
    replica.master_id = None
    replica.slots = master.slots
    replica.epoch = max(n.epoch for n in cluster.nodes.values()) + 1
    master.slots = frozenset()
    if master.alive:
        master.master_id = replica.node_id
        master.link_up = False
    else:
        master.rejoin_as_replica_of = replica.node_id
    for node in cluster.nodes.values():
        if node.master_id == master.node_id and node is not replica:
            node.master_id = replica.node_id
            node.link_up = False


def partial(step: Step, parts: int) -> Step:
    """The action cut after its first ``parts`` parts, as if we crashed while executing it."""
    match step:
        case StartMembers(names):
            return StartMembers(names[:parts])
        case SetConfigEpochs(epochs):
            return SetConfigEpochs(epochs[:parts])
        case AddSlots(assignments):
            return AddSlots(assignments[:parts])
        case Meet(pairs):
            return Meet(pairs[:parts])
        case Replicate(assignments):
            return Replicate(assignments[:parts])
        case Forget():
            return replace(step, on=step.on[:parts])
        case _:
            return step


def size(step: Step) -> int:
    match step:
        case StartMembers(names):
            return len(names)
        case SetConfigEpochs(parts) | AddSlots(parts) | Meet(parts) | Replicate(parts):
            return len(parts)
        case Forget(_, on):
            return len(on)
        case _:
            return 1


Check = Callable[[Cluster, Step], None]


def run(
    cluster: Cluster,
    max_steps: int,
    *,
    crash: Callable[[Step], int | None] | None = None,
    check: Check | None = None,
) -> list[Step]:
    """Ask next_step and apply it until it says None. ``crash`` may cut an action short (return
    how many parts get applied); ``check`` sees every step before it is applied. Returns the
    steps taken, ending with None; fails if None is not reached within ``max_steps`` steps."""
    spec = cluster.spec()
    trace: list[Step] = []
    for _ in range(max_steps):
        step = next_step(spec, cluster.observe())
        trace.append(step)
        if check is not None:
            check(cluster, step)
        if step is None:
            return trace
        parts = crash(step) if crash is not None else None
        apply(cluster, step if parts is None else partial(step, parts))
    described = [s.describe() if s is not None else "done" for s in trace]
    raise AssertionError(f"no convergence in {max_steps} steps: {described}")
