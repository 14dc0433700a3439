"""What the loop reports after every pass: phase, current step, problems, recent events."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from redkube.model.actions import Step
from redkube.planning.assessing import Health, ShardSummary
from redkube.planning.rolling import Rollout


class Phase(Enum):
    BOOTSTRAPPING = "Bootstrapping"
    READY = "Ready"
    HEALING = "Healing"
    RESHARDING = "Resharding"
    UPDATING = "Updating"
    STOPPED = "Stopped"


def phase_of(step: Step, health: Health, *, formed: bool) -> Phase:
    """The phase from what one pass observed, never from the loop's memory (a restarted operator
    on a healthy cluster says Ready at once): Ready when nothing is left to do and nothing is
    wrong; Resharding while slots are to move; Updating while members run an old revision or
    live settings are to apply; otherwise Healing once any slot is assigned (the
    cluster holds data), else Bootstrapping."""
    if step is None and health.ok:
        return Phase.READY
    if health.slots_to_move:
        return Phase.RESHARDING
    if health.outdated or health.unsettled:
        return Phase.UPDATING
    return Phase.HEALING if formed else Phase.BOOTSTRAPPING


@dataclass(frozen=True)
class Migration:
    """A resharding in progress: slots and keys moved since it began, slots still to move."""

    slots_moved: int
    slots_left: int
    keys_moved: int
    seconds: float

    def describe(self) -> str:
        total = self.slots_moved + self.slots_left
        rate = self.keys_moved / self.seconds if self.seconds > 0 else 0.0
        slot_rate = self.slots_moved / self.seconds if self.seconds > 0 else 0.0
        left = f", about {self.slots_left / slot_rate:.0f}s left" if slot_rate > 0 else ""
        return (
            f"{self.slots_moved}/{total} slots moved, {self.keys_moved} keys "
            f"({rate:,.0f} keys/s){left}"
        )


class MigrationProgress:
    """Counts what the loop moved since the plan last had nothing to move."""

    def __init__(self) -> None:
        self._started: float | None = None
        self._slots = 0
        self._keys = 0

    def moved(self, slots: int, keys: int) -> None:
        if self._started is None:
            self._started = time.monotonic()
        self._slots += slots
        self._keys += keys

    def report(self, slots_left: int) -> Migration | None:
        if slots_left == 0:
            self._started, self._slots, self._keys = None, 0, 0
            return None
        if self._started is None:
            self._started = time.monotonic()
        seconds = time.monotonic() - self._started
        return Migration(self._slots, slots_left, self._keys, seconds)


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
    migration: Migration | None = None
    shape: tuple[int, int] | None = None  # (shards, replicas) of the spec this pass worked to
    rollout: Rollout | None = None  # where a rolling update stands (None: no revisions)
    spec_digest: str = ""  # ClusterSpec.digest() of the spec this pass worked to

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
            migration=Migration(**data["migration"]) if data.get("migration") else None,
            shape=(int(data["shape"][0]), int(data["shape"][1])) if data.get("shape") else None,
            rollout=Rollout(**data["rollout"]) if data.get("rollout") else None,
            spec_digest=str(data.get("spec_digest", "")),
        )
