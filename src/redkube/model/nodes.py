"""Redis Cluster nodes as Redis itself reports them (CLUSTER NODES, INFO)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from redkube.model.addresses import Address


class Role(Enum):
    MASTER = "master"
    REPLICA = "replica"


@dataclass(frozen=True)
class NodeEntry:
    """One line of CLUSTER NODES: what one node believes about another (or itself)."""

    node_id: str
    address: Address | None
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    connected: bool
    slots: frozenset[int] = frozenset()
    migrating: Mapping[int, str] = field(default_factory=dict)
    importing: Mapping[int, str] = field(default_factory=dict)

    @property
    def role(self) -> Role:
        return Role.REPLICA if "slave" in self.flags else Role.MASTER

    @property
    def is_master(self) -> bool:
        return self.role is Role.MASTER

    @property
    def failed(self) -> bool:
        return "fail" in self.flags

    @property
    def suspected(self) -> bool:
        return "fail?" in self.flags

    @property
    def in_handshake(self) -> bool:
        return "handshake" in self.flags

    @property
    def myself(self) -> bool:
        return "myself" in self.flags


@dataclass(frozen=True)
class NodeView:
    """Everything one reachable node told us in one observation."""

    address: Address
    myself: NodeEntry
    known: tuple[NodeEntry, ...]
    cluster_ok: bool
    master_link_up: bool | None
    replication_offset: int
    keys: int
    used_memory: int
    version: str
    # A replica's replication link target (INFO master_host:master_port); None on a master.
    replicating_from: Address | None = None
    maxmemory: int = 0  # 0: no limit
    # Keys this node holds in slots some node has open (CLUSTER COUNTKEYSINSLOT; asked only
    # while slots are open).
    open_slot_keys: Mapping[int, int] = field(default_factory=dict)
    # Valkey's atomic slot migration jobs still running here (CLUSTER GETSLOTMIGRATIONS), as
    # "EXPORT 0-99 to <id>" texts.
    migrations: tuple[str, ...] = ()
    # CONFIG GET of the live settings the spec sets (key -> value as the server reports it).
    config: Mapping[str, str] = field(default_factory=dict)
    # An AOF rewrite is running or scheduled (INFO persistence). After a full sync a replica's
    # AOF holds only its data from before the sync until that rewrite ends: killed meanwhile,
    # it comes back without what it acknowledged since.
    rewriting_aof: bool = False
    # What CLUSTER INFO says behind its cluster_state (slots ok and assigned, masters with
    # slots, nodes known), so a wait on cluster_state:ok says what the node itself lacks.
    cluster_summary: str = ""
    # INFO stats and clients: commands per second (the server's own instantaneous measure) and
    # client connections, for metrics and `redkube status`.
    ops_per_sec: int = 0
    connected_clients: int = 0

    @property
    def atomic_migration(self) -> bool:
        """Whether the server has atomic slot migration (Valkey 9.0 and later)."""
        name, _, version = self.version.partition(" ")
        major = version.split(".", 1)[0]
        return name == "valkey" and major.isdigit() and int(major) >= 9

    @property
    def node_id(self) -> str:
        return self.myself.node_id

    def entry(self, node_id: str) -> NodeEntry | None:
        for entry in self.known:
            if entry.node_id == node_id:
                return entry
        return None

    def knows_at(self, other: NodeView) -> NodeEntry | None:
        """This node's entry for ``other``, if it knows it at the address it answers at now."""
        entry = self.entry(other.node_id)
        return entry if entry is not None and entry.address == other.address else None

    def others(self) -> tuple[NodeEntry, ...]:
        return tuple(e for e in self.known if not e.myself and not e.in_handshake)

    @property
    def alone(self) -> bool:
        return not self.others()
