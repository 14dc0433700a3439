"""What the loop reports after every pass: phase, current step, problems, recent events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from redkube.model.actions import Step
from redkube.planning.assessing import Health, ShardSummary


class Phase(Enum):
    BOOTSTRAPPING = "Bootstrapping"
    READY = "Ready"
    HEALING = "Healing"
    STOPPED = "Stopped"


def phase_of(step: Step, health: Health, *, formed: bool) -> Phase:
    """The phase from what one pass observed, never from the loop's memory (a restarted operator
    on a healthy cluster says Ready at once): Ready when nothing is left to do and nothing is
    wrong; otherwise Healing once any slot is assigned (the cluster holds data), else
    Bootstrapping."""
    if step is None and health.ok:
        return Phase.READY
    return Phase.HEALING if formed else Phase.BOOTSTRAPPING


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
    healthy_members: int = 0

    def headline(self, first_problems: tuple[str, ...] = ()) -> str:
        """The one thing the loop waits on first (problems the caller knows better first, e.g. a
        crash-looping Pod's own error), then how many more problems there are."""
        problems = (*first_problems, *self.problems)
        if first_problems:
            first = first_problems[0]
        elif self.step.startswith("waiting: "):
            first = self.step.removeprefix("waiting: ")
        elif problems:
            first = problems[0]
        else:
            return self.step
        others = len([p for p in problems if p != first])
        return first + (f"; and {others} more problem{'s' * (others != 1)}" if others else "")

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
            healthy_members=int(data.get("healthy_members", 0)),
            shards=tuple(
                ShardSummary(int(s["index"]), s["master"], tuple(s["replicas"]), str(s["slots"]))
                for s in data.get("shards", ())
            ),
        )
