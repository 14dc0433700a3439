"""One consistent look at a cluster: the platform's members and what each Redis node said."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from redkube.model.addresses import Address
from redkube.model.members import Member
from redkube.model.nodes import NodeEntry, NodeView


@dataclass(frozen=True)
class MemberObservation:
    member: Member
    view: NodeView | None
    error: str | None = None


@dataclass(frozen=True)
class Observation:
    members: tuple[MemberObservation, ...]
    # Node ID -> seconds left of the ban a recent CLUSTER FORGET put on it (servers do not report
    # it; the loop remembers what it forgot).
    banned: Mapping[str, float] = field(default_factory=dict)

    def views(self) -> Iterator[NodeView]:
        for observed in self.members:
            if observed.view is not None:
                yield observed.view

    def names_by_id(self) -> dict[str, str]:
        """Node ID -> member name, for every reachable member."""
        return {o.view.node_id: o.member.name for o in self.members if o.view is not None}

    def member_addresses(self) -> frozenset[Address | None]:
        """Where the platform's members are (None for one without an address yet)."""
        return frozenset(o.member.address for o in self.members)

    def member_ids(self) -> frozenset[str]:
        return frozenset(view.node_id for view in self.views())

    def entries_about(self, node_id: str) -> Iterator[NodeEntry]:
        for view in self.views():
            entry = view.entry(node_id)
            if entry is not None:
                yield entry
