"""Rolling changes: every spec change reaches the running nodes, in the order that keeps every
client working.

Settings the server changes at run time go to every node by CONFIG SET (``apply_live_settings``).
Everything else that defines a node's process (the binary or image, the other settings, the
container's resources) is a revision: the platform says which revision each member runs and
which it should run, and ``roll_members`` restarts outdated members one at a time, only on a
healthy cluster (it comes after every healing rule): replicas first; a master only after a
graceful CLUSTER FAILOVER to a linked replica has made it a replica itself (the replica waits
for the master's offset before it takes over, so no acknowledged write is lost). After each
restart the healing rules wait until the node is back, linked and every node reports
cluster_state:ok before the next. A shard with no replica is restarted in place only when its
data outlives the restart, and never in cache mode.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from redkube.model.actions import Failover, FailoverMode, RestartMembers, SetConfig, Step, Wait
from redkube.model.addresses import Address
from redkube.model.live_settings import canonical, is_live
from redkube.model.members import MemberState
from redkube.model.nodes import Role
from redkube.model.observations import MemberObservation, Observation
from redkube.model.specs import ClusterSpec
from redkube.planning.gossip import disagreement


def live_settings(spec: ClusterSpec) -> dict[str, str]:
    """The spec's settings that running nodes take by CONFIG SET."""
    return {key: value for key, value in spec.config if is_live(key)}


def apply_live_settings(spec: ClusterSpec, observation: Observation) -> Step:
    """Every reachable node whose live settings differ from the spec's gets them, all at once.
    A key the node did not report (CONFIG GET answered nothing) is left to its config file."""
    wanted = live_settings(spec)
    assignments: list[tuple[Address, str, str]] = []
    for view in observation.views():
        for key, value in sorted(wanted.items()):
            have = view.config.get(key)
            if have is not None and canonical(key, have) != canonical(key, value):
                assignments.append((view.address, key, value))
    return SetConfig(tuple(assignments)) if assignments else None


@dataclass(frozen=True)
class Rollout:
    """Where a rolling update stands: the revision members should run, the one the outdated
    members still run (the same once all are updated), and how many run the new one."""

    update_revision: str
    current_revision: str
    updated: int
    total: int

    @property
    def done(self) -> bool:
        return self.updated == self.total

    def describe(self) -> str:
        return f"{self.updated}/{self.total} nodes updated to revision {self.update_revision}"


def rollout(observation: Observation) -> Rollout | None:
    """The rollout over the members that have revisions; None where the platform has none."""
    members = [o.member for o in observation.members if o.member.target_revision]
    if not members:
        return None
    targets = Counter(m.target_revision for m in members if m.target_revision)
    update = targets.most_common(1)[0][0]
    outdated = Counter(m.revision for m in members if m.outdated)
    current = outdated.most_common(1)[0][0] if outdated else update
    updated = sum(1 for m in members if not m.outdated and m.revision)
    return Rollout(update, current, updated, len(members))


def replace_broken_outdated(spec: ClusterSpec, observation: Observation) -> Step:
    """A member that cannot run its old revision (a crash loop on a setting since fixed, an
    image that cannot be pulled) is restarted on the new one at once: waiting for it to come up
    as it is would wait for ever."""
    names = tuple(
        o.member.name
        for o in observation.members
        if o.member.state is MemberState.BACKOFF and o.member.outdated
    )
    if names:
        return RestartMembers(names, "it cannot run its old revision; starting the new one")
    return None


def roll_members(spec: ClusterSpec, observation: Observation) -> Step:
    """The next outdated member to restart, on a cluster the healing rules found healthy."""
    unknown = [o.member.name for o in observation.members if o.member.target_revision is None]
    if unknown:
        return Wait(f"the revision {unknown[0]} should run is not worked out yet")
    outdated = sorted(
        (o for o in observation.members if o.member.outdated and o.view is not None),
        key=lambda o: (o.member.shard, o.member.ordinal),
    )
    if not outdated:
        return None
    progress = rollout(observation)
    where = f" ({progress.describe()})" if progress is not None else ""
    if spec.paused:
        return Wait(f"rolling update paused{where}")
    # Nothing restarts until every node sees the others' roles and slots as they are: after a
    # hand-over, a node that has not heard of it yet would send clients to the old master, and
    # once that one's Pod is gone (its IP with it) a client's connect times out instead of
    # being redirected.
    gossip = disagreement(observation)
    if gossip is not None:
        return Wait(gossip)
    for observed in outdated:
        assert observed.view is not None
        if observed.view.myself.role is Role.REPLICA:
            return RestartMembers(
                (observed.member.name,),
                f"rolling update{where}: a replica of shard {observed.member.shard}",
            )
    return _hand_over_or_restart(spec, observation, outdated[0], where)


def _hand_over_or_restart(
    spec: ClusterSpec, observation: Observation, observed: MemberObservation, where: str
) -> Step:
    """An outdated master: a linked replica takes over gracefully first (an updated one, the
    most caught up, on another host); with none, a restart in place if the data persists."""
    master = observed.view
    assert master is not None
    member = observed.member
    followers = [
        o
        for o in observation.members
        if o.view is not None
        and o.view.myself.role is Role.REPLICA
        and o.view.myself.master_id == master.node_id
        and o.view.master_link_up
    ]
    if followers:
        # Masters per host after the hand-over (this one gone): the successor goes where the
        # fewest are, so that the roll does not crowd masters (and spreading them after it has
        # nothing to undo).
        hosts = Counter(
            o.member.domain.host
            for o in observation.members
            if o.view is not None
            and o.view.myself.is_master
            and o.view.myself.slots
            and o.view is not master
        )
        best = max(followers, key=lambda o: _successor_rank(o, hosts))
        assert best.view is not None
        return Failover(
            best.view.address,
            FailoverMode.DEFAULT,
            f"rolling update{where}: {member.name} hands shard {member.shard} to "
            f"{best.member.name} before it restarts",
        )
    if not spec.persistent:
        return Wait(
            f"{member.name} holds the only copy of shard {member.shard} and its data does not "
            "outlive a restart (no storage); refusing to restart it: add a replica "
            "(replicasPerShard) or storage first"
        )
    return RestartMembers(
        (member.name,),
        f"rolling update{where}: shard {member.shard} has no replica; restarting its master in "
        "place, its slots are unavailable until it is back",
        disruptive=True,
    )


def _successor_rank(candidate: MemberObservation, hosts: Counter[str]) -> tuple[bool, int, int]:
    """Updated first, then on the host with the fewest masters, then the most caught up."""
    view = candidate.view
    assert view is not None
    return (
        not candidate.member.outdated,
        -hosts[candidate.member.domain.host],
        view.replication_offset,
    )
