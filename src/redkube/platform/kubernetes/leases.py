"""Leader election through a coordination.k8s.io/v1 Lease: only the holder runs the operator.

The decisions and Lease bodies are pure (`redkube.kubernetes.leasing`); this module reads and
writes the Lease on a timer, the way client-go's `leaderelection` does:

- `acquire()` tries every `retry_period` until this process holds the Lease;
- `hold(lost)` renews every `retry_period`; when no renewal succeeded for `renew_deadline`, or
  someone else holds the Lease, it sets `lost` and returns;
- `release()` clears the holder on a clean stop, so a standby takes over at once.

Writes are PUTs carrying the `resourceVersion` that was read: a 409 Conflict means another
process wrote first, and the next period decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from redkube.kubernetes.leasing import (
    Observation,
    Verdict,
    acquire_body,
    judge,
    lease_path,
    new_lease,
    observe,
    release_body,
)
from redkube.platform.kubernetes.api import KubernetesApi, KubernetesError

log = logging.getLogger("redkube.leader")

JITTER = 0.2  # acquire attempts are spread over retry_period * (1 .. 1.2), as client-go does


class LeaseNamespaceMissing(RuntimeError):
    def __init__(self, namespace: str) -> None:
        super().__init__(f"the leader-election namespace {namespace!r} does not exist")
        self.namespace = namespace


class LeaderElector:
    def __init__(
        self,
        api: KubernetesApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.observed: Observation | None = None
        self.how = ""  # how the last successful attempt got the Lease, for the logs
        self.contact: float | None = None  # when the API last answered an attempt (clock)

    @property
    def path(self) -> str:
        return lease_path(self.namespace, self.name)

    @property
    def holder(self) -> str:
        return self.observed.holder if self.observed else ""

    @property
    def is_leader(self) -> bool:
        return self.holder == self.identity

    async def acquire(self) -> None:
        """Return once this process holds the Lease (retrying forever; cancel to give up).

        Raises `LeaseNamespaceMissing` when the Lease's namespace does not exist.
        """
        waiting_for: str | None = None
        while True:
            if await self._attempt(self.renew_deadline):
                log.info(
                    "became leader: %s holds lease %s/%s (%s)",
                    self.identity, self.namespace, self.name, self.how,
                )  # fmt: skip
                return
            if self.holder and self.holder != waiting_for:
                waiting_for = self.holder
                log.info(
                    "waiting for leadership (held by %s) on lease %s/%s",
                    self.holder, self.namespace, self.name,
                )  # fmt: skip
            await asyncio.sleep(self.retry_period * random.uniform(1.0, 1.0 + JITTER))

    async def hold(self, lost: asyncio.Event) -> None:
        """Renew every retry_period; set `lost` and return when the Lease is someone else's or
        no renewal succeeded within renew_deadline."""
        renewed = self.clock()
        try:
            while True:
                await asyncio.sleep(self.retry_period)
                left = renewed + self.renew_deadline - self.clock()
                if left > 0 and await self._attempt(left):
                    renewed = self.clock()
                    continue
                if self.holder and not self.is_leader:
                    log.error(
                        "lost leadership: lease %s/%s is now held by %s",
                        self.namespace, self.name, self.holder,
                    )  # fmt: skip
                    break
                if self.clock() - renewed >= self.renew_deadline:
                    log.error(
                        "lost leadership: lease %s/%s not renewed within %gs",
                        self.namespace, self.name, self.renew_deadline,
                    )  # fmt: skip
                    break
        except Exception:  # a renewer that died must not leave a leader acting unleased
            log.exception("lost leadership: renewing lease %s/%s failed", self.namespace, self.name)
        lost.set()

    async def release(self) -> bool:
        """Clear the holder if it is still us (on a clean stop); False if there was nothing to
        release or the write failed."""
        for _ in range(2):  # a second try after a conflict, on a fresh read
            if self.observed is None or not self.is_leader:
                return False
            body = release_body(self.observed, datetime.now(UTC))
            try:
                async with asyncio.timeout(self.renew_deadline):
                    written = await self.api.replace(self.path, body)
            except KubernetesError as error:
                if not error.conflict:
                    log.warning("lease %s/%s not released: %s", self.namespace, self.name, error)
                    return False
                with contextlib.suppress(KubernetesError, TimeoutError):
                    async with asyncio.timeout(self.renew_deadline):
                        await self._read(self.clock())
                continue
            except TimeoutError:
                log.warning("lease %s/%s not released: no reply", self.namespace, self.name)
                return False
            self.observed = observe(self.observed, written, self.clock())
            log.info("released lease %s/%s", self.namespace, self.name)
            return True
        log.warning(
            "lease %s/%s not released: written by others meanwhile", self.namespace, self.name
        )
        return False

    # --- one attempt ----------------------------------------------------------------------

    async def _attempt(self, timeout: float) -> bool:
        """One try to acquire or renew (client-go's tryAcquireOrRenew); True if we hold it."""
        try:
            async with asyncio.timeout(timeout):
                held = await self._try_acquire_or_renew()
            self.contact = self.clock()
            return held
        except TimeoutError:
            log.warning("lease %s/%s: no reply within %gs", self.namespace, self.name, timeout)
            return False
        except KubernetesError as error:
            if error.status:
                self.contact = self.clock()  # it answered, if with an error
            if error.conflict:
                log.debug("lease %s/%s: written by someone else first", self.namespace, self.name)
            else:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return False

    async def _read(self, now: float) -> bool:
        """Refresh the observation; False if the Lease does not exist."""
        try:
            lease = await self.api.get(self.path)
        except KubernetesError as error:
            if error.not_found:
                return False
            raise
        self.observed = observe(self.observed, lease, now)
        return True

    async def _try_acquire_or_renew(self) -> bool:
        now, at = self.clock(), datetime.now(UTC)
        if not await self._read(now):
            body = new_lease(self.namespace, self.name, self.identity, self.lease_duration, at)
            try:
                created = await self.api.create(lease_path(self.namespace), body)
            except KubernetesError as error:
                if error.not_found:  # the Lease's absence is a 404 too, but not on create
                    raise LeaseNamespaceMissing(self.namespace) from error
                raise  # a 409 AlreadyExists: someone created it first
            self.observed = observe(None, created, now)
            self.how = "created it"
            return True
        assert self.observed is not None
        verdict = judge(self.observed, self.identity, now, self.lease_duration)
        if verdict is Verdict.HELD:
            return False
        self.how = {
            Verdict.MINE: "it was already ours",
            Verdict.FREE: "it was released",
            Verdict.EXPIRED: f"{self.observed.holder} let it expire",
        }[verdict]
        body = acquire_body(self.observed, self.identity, self.lease_duration, at)  # renews ours
        written = await self.api.replace(self.path, body)
        self.observed = observe(self.observed, written, now)
        return True
