"""The reconcile loop, the same for every platform.

One pass: observe every member, plan the single next step, act on it, report. A pass that acted
is followed at once by another; a pass that found nothing to do sleeps until the platform reports
a change or the resync period ends. Errors are reported and retried with a growing pause.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import traceback
from collections.abc import Callable

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.executing import execute
from redkube.admin.observing import observe
from redkube.control.metrics import LoopMetrics
from redkube.control.statuses import Event, LoopStatus, MigrationProgress, phase_of
from redkube.model.actions import (
    Forget,
    MoveSlots,
    RestartMembers,
    RetireMembers,
    StartMembers,
    Step,
    Wait,
)
from redkube.model.members import MemberState
from redkube.model.observations import Observation
from redkube.model.specs import ClusterSpec
from redkube.planning.assessing import assess, claimed_slots
from redkube.planning.rolling import live_settings, rollout
from redkube.planning.stepping import next_step
from redkube.platform import Platform

RESYNC_S = 1.0
WAIT_POLL_S = 0.02
MAX_ERROR_PAUSE_S = 5.0
# One pass (observe, plan, act) is bounded: every Redis call has a 1 s socket timeout and actions
# confirm within seconds, so a pass that takes this long is stuck; it is cancelled and retried.
PASS_TIMEOUT_S = 60.0
EVENTS_KEPT = 30
# A node refuses a node ID it was told to FORGET for 60 s (CLUSTER_BLACKLIST_TTL in Redis and
# Valkey; Valkey drops a MEET of it after the handshake). One more second for clock skew.
FORGET_BAN_S = 61.0


class Reconciler:
    def __init__(
        self,
        spec: ClusterSpec,
        platform: Platform,
        pool: ClientPool,
        report: Callable[[LoopStatus], None],
        log: Callable[[str], None],
        forgotten: dict[str, float] | None = None,
        formed: bool = False,
        metrics: LoopMetrics | None = None,
        metrics_label: str | None = None,
    ) -> None:
        """``forgotten`` (node ID -> monotonic time this loop forgot it) may be shared with the
        next Reconciler of the same cluster (a spec change restarts the loop; the servers' bans
        on forgotten IDs go on). ``formed``: the cluster was seen holding slots before (its last
        status said so); it only counts while no node answers at all, as when every Pod is
        down. ``metrics``: where each pass is counted, under ``metrics_label`` (default: the
        cluster's name)."""
        self.spec = spec
        self.platform = platform
        self.pool = pool
        self._report = report
        self._log = log
        self._events: list[Event] = []
        self._forgotten = forgotten if forgotten is not None else {}
        self._formed = formed
        self._errors = 0
        self._last_wait: str | None = None
        self._progress = MigrationProgress()
        # Members restarted in place with no replica (their shard unavailable): since when.
        self._down_since: dict[str, float] = {}
        self.metrics = metrics
        self.metrics_label = metrics_label or spec.name

    def record(self, message: str) -> None:
        """Something happened worth telling the user (the local form of a Kubernetes Event)."""
        self._log(message)
        self._events = [*self._events, Event(time.time(), message)][-EVENTS_KEPT:]

    def _bans(self) -> dict[str, float]:
        now = time.monotonic()
        for node_id in [i for i, t in self._forgotten.items() if now - t >= FORGET_BAN_S]:
            del self._forgotten[node_id]
        return {i: FORGET_BAN_S - (now - t) for i, t in self._forgotten.items()}

    def _seen_formed(self, observation: Observation) -> bool:
        """Whether the cluster holds slots: what the nodes say, or, when none answers, what was
        last seen."""
        if next(observation.views(), None) is not None:
            self._formed = bool(claimed_slots(observation))
        return self._formed

    async def run_once(self) -> Step:
        spec = self.spec  # a new shape (`redkube up`) may arrive while this pass runs
        observation = await observe(self.platform.members(), self.pool, list(live_settings(spec)))
        observation = dataclasses.replace(observation, banned=self._bans())
        step = next_step(spec, observation)
        if isinstance(step, StartMembers) and not self.platform.starts_members:
            # Nothing to do but let the platform start them: a named wait, not an action (an
            # Event) on every pass while Pods are recreated.
            step = Wait(f"{', '.join(step.names)} not running yet; the platform starts them")
        health = assess(spec, observation)
        self._measure_outages(observation)
        error: str | None = None
        if isinstance(step, Wait) and step.reason != self._last_wait:
            self._log(step.describe())
        self._last_wait = step.reason if isinstance(step, Wait) else None
        if step is not None and not isinstance(step, Wait):
            self.record(step.describe())
            try:
                if isinstance(step, Forget):
                    self._forgotten[step.node_id] = time.monotonic()
                if isinstance(step, StartMembers):
                    await self.platform.start(step.names)
                elif isinstance(step, RetireMembers):
                    await self.platform.retire(step.names)
                elif isinstance(step, RestartMembers):
                    if step.disruptive:
                        self._down_since.update(dict.fromkeys(step.names, time.monotonic()))
                    await self.platform.restart(step.names)
                else:
                    done = await execute(step, self.pool)
                    for note in done.notes:
                        self.record(note)
                    if isinstance(step, MoveSlots):
                        self._progress.moved(step.slots, done.keys)
                self._errors = 0
            except AdminError as failure:
                error = str(failure)
                self._errors += 1
                self.record(f"failed: {error}")
        phase = phase_of(step, health, formed=self._seen_formed(observation))
        if self.metrics is not None:
            self.metrics.record_pass(
                self.metrics_label, spec, observation, health, phase, step, error is not None
            )
        self._report(
            LoopStatus(
                phase=phase,
                step="in sync with the spec" if step is None else step.describe(),
                problems=health.problems,
                masters=health.masters,
                linked_replicas=health.linked_replicas,
                healthy_members=health.healthy_members,
                migration=self._progress.report(health.slots_to_move),
                rollout=rollout(observation),
                spec_digest=spec.digest(),
                shape=(spec.shards, spec.replicas),
                shards=health.shards,
                error=error,
                events=tuple(self._events),
                crashing=tuple(
                    o.member.name
                    for o in observation.members
                    if o.member.state is MemberState.BACKOFF
                ),
            )
        )
        return step

    def _measure_outages(self, observation: Observation) -> None:
        """A shard's only node restarted in place: say how long its slots were unavailable,
        once it serves them again."""
        for observed in observation.members:
            since = self._down_since.get(observed.member.name)
            view = observed.view
            if since is None or view is None or observed.member.outdated:
                continue
            if view.cluster_ok and view.myself.is_master and view.myself.slots:
                del self._down_since[observed.member.name]
                self.record(
                    f"{observed.member.name} serves shard {observed.member.shard} again after "
                    f"{time.monotonic() - since:.1f}s unavailable (restarted in place)"
                )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(PASS_TIMEOUT_S):
                    step = await self.run_once()
            except Exception as error:  # the loop must outlive any one pass: said, then retried
                self._errors += 1
                why = "took too long" if isinstance(error, TimeoutError) else "failed"
                self.record(f"failed: a pass {why} ({type(error).__name__}: {error})")
                self._log("".join(traceback.format_exception(error)).rstrip())
                if self.metrics is not None:
                    self.metrics.record_pass_error(self.metrics_label)
                step = None
            if self._errors:
                pause = min(0.1 * 2 ** (self._errors - 1), MAX_ERROR_PAUSE_S)
            elif step is None:
                pause = RESYNC_S
            elif isinstance(step, Wait):
                pause = WAIT_POLL_S
            else:
                continue
            await self._pause(pause, stop)

    async def _pause(self, seconds: float, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        changed = asyncio.ensure_future(self.platform.wait_for_change(seconds))
        await asyncio.wait({stopping, changed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopping, changed):
            task.cancel()
