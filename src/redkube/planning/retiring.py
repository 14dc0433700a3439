"""Before shards shrink: a master on an ordinal that goes away hands its role to one that stays.

The preStop hook does the same as the Pod stops, but only as a last resort with a time limit. The
operator does it first, while every member still runs, so no master is ever stopped by a scale-in.
Pure and level-triggered: the caller observes every member that exists now, asks for the next
step, carries it out and asks again until there is none.
"""

from __future__ import annotations

from redkube.model.actions import Failover, FailoverMode, Wait
from redkube.model.nodes import Role
from redkube.model.observations import Observation


def hand_over_departing(observation: Observation, keep: int) -> Failover | Wait | None:
    """The next graceful failover that moves a master off an ordinal >= `keep` (the members per
    shard after the scale-in), a Wait while the kept replicas are not in sync yet, or None when
    no reachable master sits on a departing ordinal."""
    for observed in observation.members:
        view, member = observed.view, observed.member
        if view is None or member.ordinal < keep:
            continue
        if view.myself.role is not Role.MASTER or not view.myself.slots:
            continue
        kept_replicas = [
            (other.member.ordinal, other.view)
            for other in observation.members
            if other.member.shard == member.shard
            and other.member.ordinal < keep
            and other.view is not None
            and other.view.myself.role is Role.REPLICA
            and other.view.myself.master_id == view.node_id
        ]
        in_sync = [(ordinal, v) for ordinal, v in kept_replicas if v.master_link_up]
        if not in_sync:
            return Wait(
                f"{member.name} is master and goes with the scale-in; no replica that stays is "
                "in sync with it yet"
            )
        _, best = max(in_sync, key=lambda pair: (pair[1].replication_offset, -pair[0]))
        return Failover(
            best.address,
            FailoverMode.DEFAULT,
            f"{member.name} is master and goes with the scale-in; handing its role over first",
        )
    return None
