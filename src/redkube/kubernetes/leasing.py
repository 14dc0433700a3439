"""Leader election on a coordination.k8s.io/v1 Lease, as pure decisions and bodies.

The rules are client-go's (`tools/leaderelection`): a Lease names its holder and how long the
holder's claim lasts. Whether a claim has run out is judged on *this* process's clock, from when
it last saw the record change (`Observation.seen_at`), never by comparing the Lease's
`renewTime` with the local wall clock, so clock skew between machines cannot end a live claim.
A holder that stops cleanly clears `holderIdentity` and sets `leaseDurationSeconds: 1`
(client-go's ReleaseOnCancel), so a standby takes over at once.

Two clocks come in from the caller: `now` (seconds on a monotonic clock) for judging, `at` (an
aware datetime) for the MicroTime stamps written into the Lease.
"""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

API_VERSION = "coordination.k8s.io/v1"
KIND = "Lease"
RELEASED_DURATION_S = 1


def lease_path(namespace: str, name: str = "") -> str:
    """The REST path of one Lease, or of the namespace's Lease collection when `name` is empty."""
    collection = f"/apis/{API_VERSION}/namespaces/{namespace}/leases"
    return f"{collection}/{name}" if name else collection


def micro_time(at: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds, `2025-01-02T03:04:05.000006Z`."""
    if at.tzinfo is None:
        raise ValueError("a MicroTime needs an aware datetime")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Verdict(enum.Enum):
    FREE = "free"  # no holder: never taken, or released
    EXPIRED = "expired"  # a holder, unrenewed for its whole lease duration (on our clock)
    MINE = "mine"
    HELD = "held"  # another holder, still within its lease duration

    @property
    def takeable(self) -> bool:
        return self is not Verdict.HELD


@dataclass(frozen=True)
class Observation:
    """The Lease as this process last read or wrote it, and when (on our monotonic clock) its
    record last changed."""

    lease: JSON
    seen_at: float

    @property
    def spec(self) -> JSON:
        spec: JSON = self.lease.get("spec") or {}
        return spec

    @property
    def holder(self) -> str:
        return str(self.spec.get("holderIdentity") or "")

    @property
    def transitions(self) -> int:
        return int(self.spec.get("leaseTransitions") or 0)

    def duration_s(self, default: float) -> float:
        """The holder's own lease duration, else ours."""
        value = self.spec.get("leaseDurationSeconds")
        return float(value) if value else default


def observe(previous: Observation | None, lease: Mapping[str, Any], now: float) -> Observation:
    """The new observation after reading (or writing) `lease` at `now`: the clock restarts only
    when the record itself changed."""
    if previous is not None and previous.spec == (lease.get("spec") or {}):
        return Observation(dict(lease), previous.seen_at)
    return Observation(dict(lease), now)


def judge(
    observation: Observation, identity: str, now: float, default_duration_s: float
) -> Verdict:
    if observation.holder == identity:
        return Verdict.MINE
    if not observation.holder:
        return Verdict.FREE
    if observation.seen_at + observation.duration_s(default_duration_s) > now:
        return Verdict.HELD
    return Verdict.EXPIRED


def _spec(identity: str, duration_s: float, acquired: str, renewed: str, transitions: int) -> JSON:
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, math.ceil(duration_s)),  # whole seconds, never shorter
        "acquireTime": acquired,
        "renewTime": renewed,
        "leaseTransitions": transitions,
    }


def new_lease(namespace: str, name: str, identity: str, duration_s: float, at: datetime) -> JSON:
    """A Lease to create, held by `identity` from `at`."""
    stamp = micro_time(at)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": _spec(identity, duration_s, stamp, stamp, 0),
    }


def acquire_body(observation: Observation, identity: str, duration_s: float, at: datetime) -> JSON:
    """The Lease to write (PUT, with its resourceVersion) to take it: renewed when it is already
    ours, else a new term (acquireTime now, one more transition)."""
    if observation.holder == identity:
        return renew_body(observation, identity, duration_s, at)
    body = copy.deepcopy(observation.lease)
    stamp = micro_time(at)
    body["spec"] = {
        **observation.spec,
        **_spec(identity, duration_s, stamp, stamp, observation.transitions + 1),
    }
    return body


def renew_body(observation: Observation, identity: str, duration_s: float, at: datetime) -> JSON:
    """The Lease to write to extend our own term: acquireTime and transitions kept."""
    body = copy.deepcopy(observation.lease)
    stamp = micro_time(at)
    acquired = str(observation.spec.get("acquireTime") or stamp)
    body["spec"] = {
        **observation.spec,
        **_spec(identity, duration_s, acquired, stamp, observation.transitions),
    }
    return body


def release_body(observation: Observation, at: datetime) -> JSON:
    """The Lease to write when we stop: no holder, a one-second duration (client-go's
    ReleaseOnCancel), transitions kept."""
    body = copy.deepcopy(observation.lease)
    stamp = micro_time(at)
    spec = {k: v for k, v in observation.spec.items() if k != "holderIdentity"}
    spec.update(
        leaseDurationSeconds=RELEASED_DURATION_S,
        acquireTime=stamp,
        renewTime=stamp,
        leaseTransitions=observation.transitions,
    )
    body["spec"] = spec
    return body
