"""LoopStatus survives the JSON round trip the supervisor's status file makes."""

from __future__ import annotations

import json

from redkube.control.statuses import Event, LoopStatus, Phase
from redkube.planning.assessing import ShardSummary


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
