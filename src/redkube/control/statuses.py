"""What the loop reports after every pass: phase, current step, problems, recent events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from redkube.planning.assessing import ShardSummary


class Phase(Enum):
    BOOTSTRAPPING = "Bootstrapping"
    READY = "Ready"
    HEALING = "Healing"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class Event:
    at: float
    message: str


@dataclass(frozen=True)
class LoopStatus:
    phase: Phase
    step: str
    problems: tuple[str, ...]
    masters: int
    linked_replicas: int
    error: str | None = None
    events: tuple[Event, ...] = field(default_factory=tuple)
    crashing: tuple[str, ...] = ()  # members held in restart back-off
    shards: tuple[ShardSummary, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopStatus:
        return cls(
            phase=Phase(data["phase"]),
            step=str(data["step"]),
            problems=tuple(data["problems"]),
            masters=int(data["masters"]),
            linked_replicas=int(data["linked_replicas"]),
            error=data.get("error"),
            events=tuple(Event(float(e["at"]), str(e["message"])) for e in data["events"]),
            crashing=tuple(data.get("crashing", ())),
            shards=tuple(
                ShardSummary(int(s["index"]), s["master"], tuple(s["replicas"]), str(s["slots"]))
                for s in data.get("shards", ())
            ),
        )
