"""Rolling changes, planned on plain data: the order of restarts, failovers first, pauses,
live settings, and which server version changes the data survives."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkube.model.actions import Failover, FailoverMode, RestartMembers, SetConfig, Step, Wait
from redkube.model.members import MemberState
from redkube.planning.assessing import assess
from redkube.planning.rolling import rollout
from redkube.planning.stepping import next_step
from redkube.planning.upgrading import (
    ServerVersion,
    change_refusal,
    version_of_image,
    version_of_server,
)
from tests.planning.builders import Cluster
from tests.planning.simulation import apply, run

OLD, NEW = "rev-old", "rev-new"


def outdated(cluster: Cluster) -> Cluster:
    for seat in cluster.seats:
        seat.revision, seat.target_revision = OLD, NEW
    return cluster


def roles(cluster: Cluster) -> dict[str, bool]:
    """Member name -> whether its node is a master now."""
    return {seat.name: cluster.nodes[seat.node_id].is_master for seat in cluster.seats}


@pytest.mark.parametrize(("shards", "replicas"), [(3, 1), (3, 2), (1, 1), (5, 1)])
def test_a_roll_restarts_replicas_first_and_each_master_after_a_failover(
    shards: int, replicas: int
) -> None:
    cluster = outdated(Cluster.healthy(shards, replicas))
    events: list[str] = []

    def check(cluster: Cluster, step: Step) -> None:
        if isinstance(step, RestartMembers):
            assert len(step.names) == 1 and not step.disruptive, step
            assert not roles(cluster)[step.names[0]], f"restarted a master: {step}"
            events.append("restart")
        elif isinstance(step, Failover) and "rolling update" in step.reason:
            assert step.mode is FailoverMode.DEFAULT, step
            successor = cluster.seat_at(step.replica)
            assert successor.revision == NEW, "a master handed over to an outdated replica"
            events.append("failover")

    trace = run(cluster, 200, check=check)
    assert all(seat.revision == NEW for seat in cluster.seats)
    total = shards * (1 + replicas)
    assert events.count("restart") == total
    assert events.count("failover") == shards
    # Every replica first (shards * replicas restarts), then a failover before each old master.
    assert events[: shards * replicas] == ["restart"] * (shards * replicas)
    assert events[shards * replicas :] == ["failover", "restart"] * shards
    assert trace[-1] is None
    assert assess(cluster.spec(), cluster.observe()).ok


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=5), min_size=1))
def test_any_set_of_outdated_members_converges_without_a_master_restart(
    stale: set[int],
) -> None:
    """Whatever members run an old revision (as after an interrupted roll), the loop ends with
    all updated, and the simulator (which refuses to restart a master with a replica) agrees."""
    cluster = Cluster.healthy(3, 1)
    for index in stale:
        seat = cluster.seats[index]
        seat.revision, seat.target_revision = OLD, NEW
    for seat in cluster.seats:
        if seat.target_revision != NEW:
            seat.revision, seat.target_revision = NEW, NEW
    run(cluster, 100)
    assert all(seat.revision == NEW for seat in cluster.seats)


def test_paused_stops_before_the_next_node_and_says_where_the_roll_stands() -> None:
    cluster = outdated(Cluster.healthy(3, 1))
    apply(cluster, next_step(cluster.spec(), cluster.observe()))  # one replica restarted
    apply(cluster, Wait("link"))
    spec = replace(cluster.spec(), paused=True)
    step = next_step(spec, cluster.observe())
    assert isinstance(step, Wait)
    assert "paused (1/6 nodes updated to revision rev-new)" in step.reason
    progress = rollout(cluster.observe())
    assert progress is not None and (progress.updated, progress.total) == (1, 6)
    assert (progress.current_revision, progress.update_revision) == (OLD, NEW)
    assert isinstance(next_step(cluster.spec(), cluster.observe()), RestartMembers)


def test_no_restart_while_the_target_revision_is_not_known() -> None:
    cluster = outdated(Cluster.healthy(3, 1))
    cluster.seats[2].target_revision = None
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, Wait) and "not worked out yet" in step.reason


def test_a_restarted_node_is_waited_for_before_the_next() -> None:
    cluster = outdated(Cluster.healthy(3, 1))
    first = next_step(cluster.spec(), cluster.observe())
    assert isinstance(first, RestartMembers)
    apply(cluster, first)  # its replication link is down until the next tick
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, Wait) and "syncing from its master" in step.reason


def test_a_handed_over_master_restarts_only_once_every_node_has_heard_of_the_hand_over() -> None:
    """Clients ask any node where a slot lives; one that has not heard of the hand-over yet
    names the old master, whose Pod (and IP) a restart takes away."""
    cluster = outdated(Cluster.healthy(3, 1))
    for seat in cluster.seats:
        if not cluster.nodes[seat.node_id].is_master:
            seat.revision = NEW  # the replicas are done: the masters are next
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, Failover), step
    apply(cluster, step)
    new = cluster.node_at(step.replica)
    old = next(n for n in cluster.current_nodes() if n.master_id == new.node_id)
    old.link_up = True  # linked to its new master, as a tick of the simulation would
    laggard = next(n for n in cluster.current_nodes() if n not in (old, new))
    laggard.beliefs[new.node_id] = (frozenset(), old.node_id)  # still a replica to it ...
    laggard.beliefs[old.node_id] = (new.slots, None)  # ... and the old one the master
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, Wait) and "(gossip)" in step.reason, step
    del laggard.beliefs[new.node_id], laggard.beliefs[old.node_id]
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, RestartMembers) and step.names == (cluster.seat_of(old).name,), step


def test_a_shard_without_replicas_restarts_in_place_only_when_its_data_persists() -> None:
    cluster = outdated(Cluster.healthy(3, 0))
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, RestartMembers) and step.disruptive
    assert step.describe().startswith("warning: restart demo-0-0"), step.describe()
    cache = replace(cluster.spec(), persistent=False)
    refused = next_step(cache, cluster.observe())
    assert isinstance(refused, Wait)
    assert "holds the only copy of shard 0" in refused.reason
    assert "refusing to restart it" in refused.reason


def test_a_member_crash_looping_on_an_old_revision_is_restarted_on_the_new_one() -> None:
    cluster = outdated(Cluster.healthy(3, 1))
    cluster.seats[1].state = MemberState.BACKOFF  # a replica
    step = next_step(cluster.spec(), cluster.observe())
    assert isinstance(step, RestartMembers) and step.names == ("demo-0-1",)
    # One crash-looping on the new revision is not restarted again: the loop waits and says so.
    cluster.seats[1].revision = NEW
    waiting = next_step(cluster.spec(), cluster.observe())
    assert isinstance(waiting, Wait) and "crashed repeatedly" in waiting.reason


def test_live_settings_go_to_the_nodes_that_differ_and_compare_canonically() -> None:
    cluster = Cluster.healthy(3, 1)
    for node in cluster.nodes.values():
        node.config = {"maxmemory-policy": "noeviction", "maxmemory": "104857600"}
    spec = replace(cluster.spec(), config=(("maxmemory", "100mb"),))
    assert next_step(spec, cluster.observe()) is None  # 100mb is 104857600 bytes
    spec = replace(spec, config=(("maxmemory", "100mb"), ("maxmemory-policy", "allkeys-lru")))
    step = next_step(spec, cluster.observe())
    assert isinstance(step, SetConfig) and len(step.assignments) == 6
    assert {(key, value) for _, key, value in step.assignments} == {
        ("maxmemory-policy", "allkeys-lru")
    }
    health = assess(spec, cluster.observe())
    assert health.unsettled == 6 and not health.ok
    apply(cluster, step)
    assert next_step(spec, cluster.observe()) is None
    assert assess(spec, cluster.observe()).ok


def test_settings_a_server_cannot_take_live_are_not_set_live() -> None:
    cluster = Cluster.healthy(1, 1)
    for node in cluster.nodes.values():
        node.config = {"databases": "16"}
    spec = replace(cluster.spec(), config=(("databases", "4"),))
    assert next_step(spec, cluster.observe()) is None  # a restart's business (a new revision)


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        ("redis:7.0", "valkey/valkey:9.1", False),  # the migration people make today
        ("redis:7.2", "valkey/valkey:8.1", False),
        ("valkey/valkey:9.0", "valkey/valkey:9.1", False),
        ("valkey/valkey:9.1", "valkey/valkey:9.0", False),  # the same RDB 80
        ("valkey/valkey:8.1", "valkey/valkey:9.1", False),
        ("redis:7.0", "redis:7.2", False),
        ("valkey/valkey:9.1", "valkey/valkey:8.1", True),  # RDB 80 -> 11
        ("valkey/valkey:9.1", "redis:7.0", True),
        ("valkey/valkey:8.1", "redis:7.0", True),  # RDB 11 -> 10
        ("redis:7.4", "valkey/valkey:9.1", True),  # Redis' RDB 12 is foreign to Valkey
        ("redis:7.2", "redis:7.0", True),
        ("redis:7", "valkey/valkey:9", True),  # redis:7 is 7.4 today
    ],
)
def test_version_changes_the_data_survives(old: str, new: str, refused: bool) -> None:
    before, after = version_of_image(old), version_of_image(new)
    assert before is not None and after is not None
    refusal = change_refusal(before, after)
    assert (refusal is not None) is refused, refusal
    if refusal is not None:
        assert "cannot load the data" in refusal and "refusing to restart any node" in refusal


def test_versions_read_from_images_and_servers() -> None:
    assert version_of_image("docker.io/library/redis:7.0.15-alpine") == ServerVersion("redis", 7, 0)
    assert version_of_image("ghcr.io/valkey/valkey:9") == ServerVersion("valkey", 9, None)
    assert version_of_image("nginx:1.27") is None
    assert version_of_server("valkey 9.1.2") == ServerVersion("valkey", 9, 1)
    assert version_of_server("redis 7.0.15") == ServerVersion("redis", 7, 0)
    assert version_of_server("keydb 6.3") is None
