"""Before a scale-in, masters on departing ordinals hand their role to a member that stays."""

from __future__ import annotations

import pytest

from redkube.model.actions import Failover, FailoverMode, Wait
from redkube.planning.retiring import hand_over_departing
from tests.planning.builders import Cluster
from tests.planning.simulation import apply


def master_on(cluster: Cluster, shard: int, ordinal: int) -> None:
    """Make the member at (shard, ordinal) its shard's master, its shard-mates in sync with it."""
    apply(cluster, Failover(cluster.seat(shard, ordinal).address, FailoverMode.DEFAULT, "test"))
    for node in cluster.current_nodes():
        if node.master_id is not None:
            node.link_up = True


def test_nothing_to_hand_over_when_masters_stay() -> None:
    cluster = Cluster.healthy(3, 2)
    assert hand_over_departing(cluster.observe(), keep=1) is None
    assert hand_over_departing(cluster.observe(), keep=2) is None


@pytest.mark.parametrize("keep", [1, 2])
def test_a_departing_master_hands_over_gracefully_to_a_replica_that_stays(keep: int) -> None:
    cluster = Cluster.healthy(3, 2)
    master_on(cluster, 1, 2)
    step = hand_over_departing(cluster.observe(), keep=keep)
    assert isinstance(step, Failover)
    assert step.mode is FailoverMode.DEFAULT  # the master is alive: no writes are lost
    assert cluster.seat_at(step.replica).shard == 1
    assert cluster.seat_at(step.replica).ordinal < keep
    assert "demo-1-2" in step.reason

    apply(cluster, step)
    for node in cluster.current_nodes():
        node.link_up = node.master_id is not None
    assert hand_over_departing(cluster.observe(), keep=keep) is None
    assert (
        cluster.node(1, 2).master_id == cluster.nodes[cluster.seat_at(step.replica).node_id].node_id
    )


def test_the_staying_replica_with_the_highest_offset_is_chosen() -> None:
    cluster = Cluster.healthy(2, 2)
    master_on(cluster, 0, 2)
    cluster.node(0, 0).offset = 900
    cluster.node(0, 1).offset = 950
    step = hand_over_departing(cluster.observe(), keep=2)
    assert isinstance(step, Failover) and step.replica == cluster.seat(0, 1).address


def test_waits_while_no_staying_replica_is_in_sync() -> None:
    cluster = Cluster.healthy(2, 2)
    master_on(cluster, 0, 2)
    cluster.node(0, 0).link_up = False
    step = hand_over_departing(cluster.observe(), keep=1)
    assert isinstance(step, Wait) and "demo-0-2" in step.reason


def test_an_unreachable_departing_master_is_left_to_the_loop() -> None:
    cluster = Cluster.healthy(2, 1)
    master_on(cluster, 0, 1)
    cluster.seat(0, 1).error = "timeout"
    assert hand_over_departing(cluster.observe(), keep=1) is None
