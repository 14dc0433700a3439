"""assess(): what is wrong with a cluster, from one observation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from redkube.model.members import MemberState
from redkube.model.slots import SlotRange
from redkube.planning.allocating import allocate_slots
from redkube.planning.assessing import assess, claimed_slots, open_slots, stale_ids
from redkube.planning.stepping import next_step
from tests.planning.builders import Cluster
from tests.planning.simulation import apply


def problems_of(cluster: Cluster) -> tuple[str, ...]:
    return assess(cluster.spec(), cluster.observe()).problems


@pytest.mark.parametrize(("shards", "replicas"), [(1, 0), (3, 1), (4, 2)])
def test_healthy_cluster_is_ok(shards: int, replicas: int) -> None:
    cluster = Cluster.healthy(shards, replicas)
    health = assess(cluster.spec(), cluster.observe())
    assert health.ok
    assert health.problems == ()
    assert health.masters == shards
    assert health.linked_replicas == shards * replicas


def test_fresh_cluster_reports_everything_uncovered_and_no_masters() -> None:
    cluster = Cluster.fresh(2, 1)
    health = assess(cluster.spec(), cluster.observe())
    assert not health.ok
    assert "16384 slots uncovered (0-16383)" in health.problems
    assert "shard 0 has 0 masters serving slots" in health.problems
    assert "shard 1 has 0 masters serving slots" in health.problems
    assert health.masters == 0 and health.linked_replicas == 0


def test_uncovered_slots_are_counted_and_described() -> None:
    cluster = Cluster.healthy(3, 1)
    master = cluster.node(2, 0)
    master.slots = master.slots - set(range(16000, 16100)) - {16383}
    assert "101 slots uncovered (16000-16099,16383)" in problems_of(cluster)


def test_slots_of_a_failed_node_still_count_as_claimed() -> None:
    cluster = Cluster.healthy(3, 0)
    cluster.wipe_running(1, 0)
    observation = cluster.observe()
    assert claimed_slots(observation) == frozenset(range(16384))
    problems = assess(cluster.spec(), observation).problems
    assert not any("uncovered" in p for p in problems)
    assert "shard 1 has 0 masters serving slots" in problems


def test_open_slots_are_reported_both_ways() -> None:
    cluster = Cluster.healthy(2, 0)
    source, target = cluster.node(0, 0), cluster.node(1, 0)
    source.migrating = {7: target.node_id, 9: target.node_id}
    target.importing = {7: source.node_id}
    problems = problems_of(cluster)
    assert f"slot 7 migrating from {source.address} to {target.node_id[:8]}" in problems
    assert f"slot 9 migrating from {source.address} to {target.node_id[:8]}" in problems
    assert f"slot 7 importing into {target.address} from {source.node_id[:8]}" in problems
    assert len(open_slots(cluster.observe())) == 3


def test_unlinked_replica_is_reported_and_not_counted() -> None:
    cluster = Cluster.healthy(3, 1)
    replica = cluster.node(1, 1)
    replica.link_up = False
    health = assess(cluster.spec(), cluster.observe())
    assert health.problems == (f"{replica.address} replication link down",)
    assert health.linked_replicas == 2
    assert health.masters == 3


def test_replica_of_the_wrong_master_is_reported() -> None:
    cluster = Cluster.healthy(2, 1)
    stray = cluster.node(0, 1)
    stray.master_id = cluster.node(1, 0).node_id
    assert f"{stray.address} is not a replica of shard 0's master" in problems_of(cluster)


def test_two_masters_serving_slots_in_one_shard_are_reported() -> None:
    cluster = Cluster.healthy(2, 1)
    rogue = cluster.node(0, 1)
    rogue.master_id = None
    master = cluster.node(0, 0)
    rogue.slots, master.slots = frozenset(range(0, 100)), master.slots - set(range(0, 100))
    health = assess(cluster.spec(), cluster.observe())
    assert "shard 0 has 2 masters serving slots" in health.problems
    assert health.masters == 1


def test_stale_ids_are_reported() -> None:
    cluster = Cluster.healthy(3, 1)
    old, new = cluster.wipe_running(2, 1)
    for _ in range(2):  # meet the new node, attach it as a replica
        apply(cluster, next_step(cluster.spec(), cluster.observe()))
    assert stale_ids(cluster.observe()) == (old.node_id,)
    problems = problems_of(cluster)
    assert f"stale node {old.node_id[:8]} still known" in problems
    assert f"{new.address} replication link down" in problems


def test_several_stale_ids_are_sorted() -> None:
    cluster = Cluster.healthy(3, 1)
    olds = [cluster.wipe_running(shard, 1)[0].node_id for shard in range(3)]
    assert stale_ids(cluster.observe()) == tuple(sorted(olds))


def test_handshake_entries_are_not_stale() -> None:
    cluster = Cluster.healthy(2, 0)
    stranger = cluster.new_node(cluster.seat(1, 0).address)
    stranger.alive = False
    viewer = cluster.node(0, 0)
    viewer.known.add(stranger.node_id)
    viewer.opinions[stranger.node_id] = frozenset({"handshake"})
    assert stale_ids(cluster.observe()) == ()
    assert problems_of(cluster) == ()


def test_unreachable_and_stopped_members_are_reported() -> None:
    cluster = Cluster.healthy(3, 1)
    cluster.seat(0, 1).error = "connection refused"
    cluster.stop(1, 1)
    cluster.stop(2, 1)
    cluster.seat(2, 1).state = MemberState.BACKOFF
    problems = problems_of(cluster)
    assert "demo-0-1 unreachable: connection refused" in problems
    assert "demo-1-1 is stopped" in problems
    assert "demo-2-1 is backoff" in problems


def test_members_flagged_failing_are_reported() -> None:
    cluster = Cluster.healthy(3, 0)
    suspect = cluster.node(2, 0)
    cluster.node(0, 0).opinions[suspect.node_id] = frozenset({"fail?"})
    cluster.node(1, 0).opinions[suspect.node_id] = frozenset({"fail"})
    problems = problems_of(cluster)
    assert "demo-2-0 flagged failing by demo-0-0" in problems
    assert "demo-2-0 flagged failing by demo-1-0" in problems


def test_cluster_state_fail_is_reported() -> None:
    cluster = Cluster.healthy(2, 1)
    node = cluster.node(1, 1)
    node.cluster_ok = False
    assert problems_of(cluster) == (f"{node.address} reports cluster_state:fail",)


def test_allocation_helper_agrees_with_healthy_builder() -> None:
    # Guards the builder itself: the healthy cluster uses the real allocation.
    cluster = Cluster.healthy(3, 0)
    assert cluster.node(1, 0).slots == frozenset(SlotRange(5461, 10922).slots())
    assert allocate_slots(3)[1] == SlotRange(5461, 10922)


@pytest.mark.parametrize("how", ["unreachable", "stopped"])
def test_a_down_member_is_not_reported_as_stale(how: str) -> None:
    cluster = Cluster.healthy(3, 1)
    if how == "unreachable":
        cluster.seat(1, 1).error = "timeout"
    else:
        cluster.stop(1, 1)
    problems = problems_of(cluster)
    assert any("demo-1-1" in p for p in problems)
    assert not any("stale" in p for p in problems), problems


def test_shard_summaries_name_each_master_its_replicas_and_slots() -> None:
    cluster = Cluster.healthy(3, 2)
    shards = assess(cluster.spec(), cluster.observe()).shards
    assert [s.index for s in shards] == [0, 1, 2]
    assert [s.slots for s in shards] == ["0-5460", "5461-10922", "10923-16383"]
    for summary in shards:
        assert summary.master == f"demo-{summary.index}-0"
        assert summary.replicas == (f"demo-{summary.index}-1", f"demo-{summary.index}-2")


def test_shard_summary_follows_a_promotion_and_drops_a_stopped_member() -> None:
    cluster = Cluster.healthy(2, 1)
    old, new = cluster.node(1, 0), cluster.node(1, 1)
    new.slots, new.master_id, new.epoch = old.slots, None, old.epoch + 1
    old.slots, old.master_id = frozenset(), new.node_id
    cluster.stop(0, 1)
    first, second = assess(cluster.spec(), cluster.observe()).shards
    assert (first.master, first.replicas, first.slots) == ("demo-0-0", (), "0-8191")
    assert (second.master, second.replicas, second.slots) == (
        "demo-1-1",
        ("demo-1-0",),
        "8192-16383",
    )


def test_shard_without_a_serving_master_has_none() -> None:
    cluster = Cluster.healthy(2, 1)
    cluster.stop(0, 0)
    first, _ = assess(cluster.spec(), cluster.observe()).shards
    assert (first.master, first.replicas, first.slots) == (None, (), "")


def test_healthy_members_count_only_members_that_serve_their_shard() -> None:
    cluster = Cluster.healthy(3, 1)
    assert assess(cluster.spec(), cluster.observe()).healthy_members == 6
    cluster.node(1, 1).link_up = False
    cluster.node(2, 0).cluster_ok = False
    assert assess(cluster.spec(), cluster.observe()).healthy_members == 4


def test_a_full_outage_has_no_healthy_member() -> None:
    """Every Pod may run (and answer PING) while no node reaches another."""
    cluster = Cluster.healthy(3, 1)
    cluster.restart_all_elsewhere()
    for node in cluster.current_nodes():
        node.cluster_ok = False
    health = assess(cluster.spec(), cluster.observe())
    assert health.healthy_members == 0 and not health.ok


def test_a_terminating_member_is_a_problem_and_not_healthy() -> None:
    cluster = Cluster.healthy(3, 1)
    observation = cluster.observe()
    leaving = observation.members[0]
    member = replace(leaving.member, terminating=True)
    observation = replace(
        observation, members=(replace(leaving, member=member), *observation.members[1:])
    )
    health = assess(cluster.spec(), observation)
    assert f"{member.name} is terminating" in health.problems
    assert health.healthy_members == 5
    step = next_step(cluster.spec(), observation)
    assert step is not None and "terminating" in step.describe()
