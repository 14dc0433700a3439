"""Plain-data clusters for planning tests, turned into the model's Observation on demand.

A ``Cluster`` holds what each Redis node holds (id, epoch, slots, role, who it knows) and what the
platform sees (members, their state and address). ``observe()`` renders it the way
``redkube.admin.observing`` would: one NodeView per reachable running member, whose ``known``
entries (myself included) are derived from the current truth about every node that node knows.

Members sit at 127.0.100.N (N = 1 + shard * members_per_shard + ordinal) and are named
``demo-<shard>-<ordinal>``; node ids are 40-hex strings (SHA-1 of a label), like Redis' own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from redkube.model.addresses import Address
from redkube.model.members import FailureDomain, Member, MemberState, member_name
from redkube.model.nodes import NodeEntry, NodeView
from redkube.model.observations import MemberObservation, Observation
from redkube.model.slots import ALL_SLOTS
from redkube.model.specs import ClusterSpec
from redkube.planning.allocating import allocate_slots
from redkube.planning.placing import place_members

CLUSTER = "demo"
VERSION = "valkey 9.1.2"
HOSTS = 3  # failure domains members are placed on, as the local platform does


def make_node_id(label: str) -> str:
    """A 40-hex node id, stable for a label."""
    return hashlib.sha1(label.encode()).hexdigest()


def member_address(index: int) -> Address:
    return Address(f"127.0.100.{index + 1}")


@dataclass
class Node:
    """One Redis node's own state. ``alive`` is False for dead processes and for the ghosts that
    a wiped node leaves behind (its old id, still remembered by the others)."""

    node_id: str
    address: Address
    epoch: int = 0
    slots: frozenset[int] = frozenset()
    master_id: str | None = None
    link_up: bool = False
    keys: int = 0
    offset: int = 0
    alive: bool = True
    known: set[str] = field(default_factory=set)
    # Flags this node holds about another node, replacing the default ("fail" iff it is dead).
    opinions: dict[str, frozenset[str]] = field(default_factory=dict)
    # Where this node believes another node is, when that differs from where it really is.
    seen_at: dict[str, Address | None] = field(default_factory=dict)
    # What this node believes another node serves and follows (slots, master id), when that
    # differs from what the other node says of itself: news it missed before it went down.
    beliefs: dict[str, tuple[frozenset[int], str | None]] = field(default_factory=dict)
    migrating: dict[int, str] = field(default_factory=dict)
    importing: dict[int, str] = field(default_factory=dict)
    # Keys this node holds per slot, for slots left open (what COUNTKEYSINSLOT reports).
    slot_keys: dict[int, int] = field(default_factory=dict)
    cluster_ok: bool | None = None  # None: derived from slot coverage
    # Set by a failover while this (dead) master was away: it rejoins as a replica of that id.
    rejoin_as_replica_of: str | None = None
    config: dict[str, str] = field(default_factory=dict)  # what CONFIG GET answers

    @property
    def is_master(self) -> bool:
        return self.master_id is None

    @property
    def fresh(self) -> bool:
        """As a brand-new node: no peers, no slots, no keys."""
        return not self.known and not self.slots and self.keys == 0


@dataclass
class Seat:
    """One member as the platform sees it, and the id of the node currently running there."""

    name: str
    shard: int
    ordinal: int
    address: Address
    domain: FailureDomain
    state: MemberState
    node_id: str
    error: str | None = None  # a running member that does not answer
    wipe_on_start: bool = False  # its data is gone: it starts as a brand-new node
    revision: str = ""  # the revision it runs, and the one it should (rolling updates)
    target_revision: str | None = ""
    host_lost: bool = False  # the platform lost touch with its host (a Node NotReady)
    terminating: bool = False  # its Pod is being deleted

    def member(self) -> Member:
        return Member(
            self.name,
            self.shard,
            self.ordinal,
            self.address,
            self.domain,
            self.state,
            self.terminating,
            revision=self.revision,
            target_revision=self.target_revision,
            host_lost=self.host_lost,
        )


@dataclass
class Cluster:
    shards: int
    replicas: int
    nodes: dict[str, Node]
    seats: list[Seat]
    order: list[int] | None = None  # observation order of the seats (default: as created)
    salt: str = ""
    generation: int = 0

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def fresh(cls, shards: int, replicas: int, salt: str = "") -> Cluster:
        """Every member running a brand-new node: epoch 0, no slots, knows nobody."""
        cluster = cls(shards, replicas, {}, [], salt=salt)
        per_shard = replicas + 1
        hosts = [FailureDomain(f"host-{i}", f"zone-{i % 2}") for i in range(HOSTS)]
        placement = place_members(shards, per_shard, hosts)
        for shard in range(shards):
            for ordinal in range(per_shard):
                index = shard * per_shard + ordinal
                address = member_address(index)
                node = cluster.new_node(address)
                cluster.seats.append(
                    Seat(
                        name=member_name(CLUSTER, shard, ordinal),
                        shard=shard,
                        ordinal=ordinal,
                        address=address,
                        domain=placement[(shard, ordinal)],
                        state=MemberState.RUNNING,
                        node_id=node.node_id,
                    )
                )
        return cluster

    @classmethod
    def healthy(cls, shards: int, replicas: int, salt: str = "") -> Cluster:
        """A converged cluster built directly: ordinal 0 of each shard masters its allocated range,
        the other ordinals replicate it with their link up, everyone knows everyone."""
        cluster = cls.fresh(shards, replicas, salt)
        allocation = allocate_slots(shards)
        ids = [seat.node_id for seat in cluster.seats]
        for seat in cluster.seats:
            node = cluster.nodes[seat.node_id]
            node.known = set(ids) - {node.node_id}
            master = cluster.node(seat.shard, 0)
            if seat.ordinal == 0:
                node.epoch = seat.shard + 1
                node.slots = frozenset(allocation[seat.shard].slots())
                node.keys = 100 + seat.shard
                node.offset = 1000
            else:
                node.master_id = master.node_id
                node.link_up = True
                node.keys = master.keys
                node.offset = 1000
        return cluster

    def new_node(self, address: Address) -> Node:
        self.generation += 1
        node = Node(make_node_id(f"{self.salt}/{address}/{self.generation}"), address)
        self.nodes[node.node_id] = node
        return node

    # -- lookups ------------------------------------------------------------------------------

    def spec(self) -> ClusterSpec:
        return ClusterSpec(CLUSTER, self.shards, self.replicas)

    def seat(self, shard: int, ordinal: int) -> Seat:
        for seat in self.seats:
            if (seat.shard, seat.ordinal) == (shard, ordinal):
                return seat
        raise KeyError((shard, ordinal))

    def seat_named(self, name: str) -> Seat:
        for seat in self.seats:
            if seat.name == name:
                return seat
        raise KeyError(name)

    def seat_at(self, address: Address) -> Seat:
        for seat in self.seats:
            if seat.address == address:
                return seat
        raise KeyError(address)

    def node(self, shard: int, ordinal: int) -> Node:
        return self.nodes[self.seat(shard, ordinal).node_id]

    def node_at(self, address: Address) -> Node:
        """The node currently running at a member's address."""
        return self.nodes[self.seat_at(address).node_id]

    def current_nodes(self) -> list[Node]:
        return [self.nodes[seat.node_id] for seat in self.seats]

    def knowers(self, node_id: str) -> list[Node]:
        return [node for node in self.current_nodes() if node_id in node.known]

    def serving_masters(self) -> list[Node]:
        return [node for node in self.current_nodes() if node.is_master and node.slots]

    # -- disruptions ----------------------------------------------------------------------------

    def stop(self, shard: int, ordinal: int, *, wipe: bool = False) -> Node:
        """The member's process dies (the platform sees it STOPPED); with ``wipe`` its data is
        gone too, so it will start as a new node. Returns the node that died."""
        seat = self.seat(shard, ordinal)
        node = self.nodes[seat.node_id]
        seat.state = MemberState.STOPPED
        seat.wipe_on_start = wipe
        node.alive = False
        for other in self.current_nodes():
            if other.master_id == node.node_id:
                other.link_up = False
        return node

    def wipe_running(self, shard: int, ordinal: int) -> tuple[Node, Node]:
        """The member lost its data and is already running again with a new id at the same
        address (a pod recreated with an empty volume). Returns (old ghost, new node)."""
        seat = self.seat(shard, ordinal)
        old = self.nodes[seat.node_id]
        old.alive = False
        for other in self.current_nodes():
            if other.master_id == old.node_id:
                other.link_up = False
        new = self.new_node(seat.address)
        seat.node_id = new.node_id
        seat.state = MemberState.RUNNING
        return old, new

    def scale_in(self, replicas: int, *, departed_alive: bool) -> list[Node]:
        """Shards shrink to 1 + ``replicas`` members: the seats on higher ordinals are gone from
        the platform. Their nodes stay in everyone's tables, still running (``departed_alive``, a
        Pod still terminating) or dead. Returns the departed nodes."""
        departed = [self.nodes[seat.node_id] for seat in self.seats if seat.ordinal > replicas]
        self.replicas = replicas
        self.seats = [seat for seat in self.seats if seat.ordinal <= replicas]
        self.order = None
        for node in departed:
            node.alive = departed_alive
            if not departed_alive:
                for other in self.current_nodes():
                    if other.master_id == node.node_id:
                        other.link_up = False
        return departed

    def promote_unseen(self, shard: int) -> tuple[Node, Node]:
        """A graceful failover in ``shard`` (a preStop hand-over) that its old master never
        heard of: the replica serves the slots with a newer epoch, everyone else knows, but the
        old master still believes it is master of them (it went down first). Returns (old master,
        new master)."""
        old = next(
            node
            for node in self.current_nodes()
            if node.is_master and node.slots and self.seat_of(node).shard == shard
        )
        new = next(node for node in self.current_nodes() if node.master_id == old.node_id)
        new.master_id = None
        new.slots = old.slots
        new.epoch = max(node.epoch for node in self.nodes.values()) + 1
        for node in self.current_nodes():
            if node.master_id == old.node_id and node is not new:
                node.master_id = new.node_id
            if node is not old:
                node.beliefs[old.node_id] = (frozenset(), None)
        old.beliefs[new.node_id] = (frozenset(), old.node_id)
        return old, new

    def restart_all_elsewhere(self, first: int = 100) -> None:
        """Every member restarts at once with a new address (every Pod deleted, new IPs), keeping
        its data and nodes.conf: each node knows the others only at their old addresses and
        flags them failed until it hears from them again."""
        old = {node.node_id: node.address for node in self.current_nodes()}
        for index, seat in enumerate(self.seats):
            seat.address = Address(f"127.0.{first + 1}.{index + 1}")
            self.nodes[seat.node_id].address = seat.address
        for node in self.current_nodes():
            for node_id in node.known:
                node.seen_at[node_id] = old.get(node_id)
                node.opinions[node_id] = frozenset({"fail"})
            node.link_up = False

    def seat_of(self, node: Node) -> Seat:
        return next(seat for seat in self.seats if seat.node_id == node.node_id)

    # -- rendering ------------------------------------------------------------------------------

    def entry(self, viewer: Node, subject: Node) -> NodeEntry:
        myself = subject is viewer
        slots, master_id = subject.slots, subject.master_id
        if not myself and subject.node_id in viewer.beliefs:
            slots, master_id = viewer.beliefs[subject.node_id]
        flags = {"slave" if master_id else "master"}
        if myself:
            flags.add("myself")
        elif subject.node_id in viewer.opinions:
            flags |= viewer.opinions[subject.node_id]
        elif not subject.alive:
            flags.add("fail")
        return NodeEntry(
            node_id=subject.node_id,
            address=subject.address
            if myself
            else viewer.seen_at.get(subject.node_id, subject.address),
            flags=frozenset(flags),
            master_id=master_id,
            config_epoch=subject.epoch,
            connected=myself or subject.alive,
            slots=slots,
            migrating=dict(subject.migrating) if myself else {},
            importing=dict(subject.importing) if myself else {},
        )

    def view(self, node: Node) -> NodeView:
        others = [self.entry(node, self.nodes[i]) for i in sorted(node.known)]
        myself = self.entry(node, node)
        known = (myself, *others)
        if node.cluster_ok is None:
            covered: set[int] = set()
            for entry in known:
                if entry.is_master and not entry.failed:
                    covered |= entry.slots
            cluster_ok = covered == ALL_SLOTS
        else:
            cluster_ok = node.cluster_ok
        return NodeView(
            address=node.address,
            myself=myself,
            known=known,
            cluster_ok=cluster_ok,
            master_link_up=None if node.is_master else node.link_up,
            replication_offset=node.offset,
            keys=node.keys,
            used_memory=1_000_000 + node.keys,
            version=VERSION,
            open_slot_keys=dict(node.slot_keys) if node.is_master else {},
            config=dict(node.config),
        )

    def observe(self) -> Observation:
        order = self.order if self.order is not None else range(len(self.seats))
        observed: list[MemberObservation] = []
        for index in order:
            seat = self.seats[index]
            node = self.nodes[seat.node_id]
            if seat.state is not MemberState.RUNNING:
                observed.append(MemberObservation(seat.member(), None, seat.state.value))
            elif seat.error is not None or not node.alive:
                observed.append(MemberObservation(seat.member(), None, seat.error or "refused"))
            else:
                observed.append(MemberObservation(seat.member(), self.view(node)))
        return Observation(tuple(observed))


def addresses_of(nodes: Iterable[Node]) -> set[Address]:
    return {node.address for node in nodes}


def ordered_pairs(addresses: Sequence[Address]) -> set[tuple[Address, Address]]:
    return {(a, b) for a in addresses for b in addresses if a != b}
