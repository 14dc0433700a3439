"""Where each shard's snapshot comes from (pure): an in-sync replica, so the master keeps serving
without a fork of its own; the master only where the shard has no linked replica."""

from __future__ import annotations

from dataclasses import dataclass

from redkube.model.backups import NotNow
from redkube.model.nodes import NodeView
from redkube.model.observations import Observation
from redkube.model.slots import SlotRange, ranges_of
from redkube.model.specs import ClusterSpec
from redkube.planning.assessing import shard_masters, shard_views


@dataclass(frozen=True)
class SnapshotSource:
    shard: int
    node: str  # member name
    view: NodeView  # the node the snapshot is taken on
    master: NodeView  # its shard's master (the same node when it has no linked replica)
    slots: tuple[SlotRange, ...]

    @property
    def role(self) -> str:
        return "master" if self.view is self.master else "replica"


def snapshot_sources(spec: ClusterSpec, observation: Observation) -> tuple[SnapshotSource, ...]:
    """One source per shard; a shard without exactly one master serving slots cannot be backed
    up (its data is in flux or unreachable), which is said plainly."""
    names = {o.view.node_id: o.member.name for o in observation.members if o.view is not None}
    sources: list[SnapshotSource] = []
    for shard in range(spec.shards):
        masters = shard_masters(spec, observation, shard)
        if len(masters) != 1:
            raise NotNow(
                f"shard {shard} has {len(masters)} masters serving slots; back up a healthy "
                "cluster (see `redkube status`)"
            )
        master = masters[0]
        if master.myself.migrating or master.myself.importing:
            raise NotNow(f"shard {shard} has slots open (a resharding runs); try again after")
        linked = [
            view
            for view in shard_views(spec, observation, shard)
            if view.myself.master_id == master.node_id and view.master_link_up
        ]
        # The replica that has the most of the master's stream (ties: by name, so every pass
        # picks the same).
        best = max(linked, key=lambda v: (v.replication_offset, names[v.node_id]), default=master)
        sources.append(
            SnapshotSource(shard, names[best.node_id], best, master, ranges_of(master.myself.slots))
        )
    return tuple(sources)
