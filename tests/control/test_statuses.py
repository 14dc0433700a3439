"""LoopStatus survives the JSON round trip the supervisor's status file makes."""

from __future__ import annotations

import json

from redkube.control.statuses import Event, LoopStatus, Phase, phase_of
from redkube.model.actions import Wait
from redkube.planning.assessing import Health, ShardSummary


def test_status_with_shards_round_trips_through_json() -> None:
    status = LoopStatus(
        phase=Phase.HEALING,
        step="wait",
        problems=("shard 1 has 0 masters serving slots",),
        masters=1,
        linked_replicas=1,
        events=(Event(1.5, "assign slots"),),
        crashing=("demo-1-0",),
        shards=(
            ShardSummary(0, "demo-0-0", ("demo-0-1",), "0-8191"),
            ShardSummary(1, None, (), ""),
        ),
    )
    assert LoopStatus.from_json(json.loads(json.dumps(status.to_json()))) == status


def test_status_written_before_shards_existed_still_reads() -> None:
    old = {"phase": "Ready", "step": "", "problems": [], "masters": 3, "linked_replicas": 3,
           "events": []}  # fmt: skip
    assert LoopStatus.from_json(old).shards == ()


def _status(step: str, problems: tuple[str, ...]) -> LoopStatus:
    return LoopStatus(Phase.HEALING, step, problems, 0, 0)


def test_headline_names_what_the_loop_waits_on_then_counts_the_rest() -> None:
    status = _status("waiting: demo-0-0 is syncing", ("a", "b", "demo-0-0 is syncing"))
    assert status.headline() == "demo-0-0 is syncing; and 2 more problems"
    assert _status("waiting: x", ("x",)).headline() == "x"
    assert _status("in sync with the spec", ()).headline() == "in sync with the spec"


def test_headline_puts_a_pod_problem_first() -> None:
    status = _status("waiting: demo-0-0 is not answering yet", ("demo-0-0 is stopped",))
    crash = "demo-0-0: CrashLoopBackOff: Bad directive"
    assert status.headline((crash,)) == crash + "; and 1 more problem"


def test_phase_comes_from_the_observation_not_the_loop_s_memory() -> None:
    healthy = Health((), 3, 3)
    sick = Health(("demo-0-1 replication link down",), 3, 2)
    assert phase_of(None, healthy, formed=True) is Phase.READY
    assert phase_of(Wait("x"), healthy, formed=True) is Phase.HEALING
    assert phase_of(None, sick, formed=True) is Phase.HEALING
    assert phase_of(Wait("x"), sick, formed=False) is Phase.BOOTSTRAPPING
