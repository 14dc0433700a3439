"""kopf handlers: one daemon per RedisCluster runs the shared reconcile loop on its Pods.

The daemon is level-triggered: every few seconds it reads the object again, applies the objects
the cluster owns when the spec changed or someone else changed them (server-side apply; the
password Secret only if absent; see `drifting.py`), and keeps one Reconciler running with the
Kubernetes platform. The Reconciler's reports become the object's status, its actions Kubernetes
Events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import kopf

from redkube.admin.connections import ClientPool
from redkube.control.metrics import LoopMetrics
from redkube.control.reconciling import Reconciler
from redkube.control.statuses import LoopStatus, Phase
from redkube.kubernetes.backups import parse_restore, parse_schedule
from redkube.kubernetes.building import (
    DEFAULT_OPERATOR_NAMESPACE,
    PASSWORD_KEY,
    build_all,
    build_network_policy,
    build_secret,
    revision,
)
from redkube.kubernetes.clusters import RedisCluster, cluster_path, parse
from redkube.kubernetes.resources import GROUP, PLURAL, VERSION
from redkube.model.specs import SpecError
from redkube.operator.api_client import api
from redkube.operator.drifting import missing_owned, still_drifted, take_drift
from redkube.operator.handover import hand_over_before_scale_in
from redkube.operator.restoring import Restore
from redkube.operator.status_writing import LatestStatus
from redkube.planning.assessing import ShardSummary
from redkube.planning.upgrading import change_refusal, version_of_image
from redkube.platform.kubernetes.api import (
    JSON,
    KubernetesError,
    object_path,
)
from redkube.platform.kubernetes.pods import KubernetesPlatform

RESYNC_S = 5.0
# Where the operator's Pods run: the NetworkPolicies let this namespace reach the client port.
OPERATOR_NAMESPACE = os.environ.get("POD_NAMESPACE") or DEFAULT_OPERATOR_NAMESPACE
REPLACE_TIMEOUT_S = 30.0
# Every RedisCluster's loop counts its passes here (label cluster: namespace/name); the
# operator serves them on --metrics-port.
METRICS = LoopMetrics()
STATUS_WRITE_WAIT_S = 5.0  # a closing run lets its last status write finish this long
RESTORE_TASK = "the restore"  # a ClusterRun's task for spec.restoreFrom
MAX_PROBLEMS = 50  # status.problems keeps the first ones; status.message says how many in all
PASSWORD_BYTES = 24

log = logging.getLogger("redkube.operator")


def as_body(obj: JSON) -> kopf.Body:
    """A plain object as kopf's Body, for posting Events about it."""
    return kopf.Body(cast(kopf.RawBody, obj))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _condition(kind: str, value: bool, reason: str, message: str) -> JSON:
    return {
        "type": kind,
        "status": "True" if value else "False",
        "reason": reason,
        "message": message[:1000],
        "lastTransitionTime": _now(),
    }


async def _patch_status(namespace: str, name: str, status: JSON) -> bool:
    """Whether the status was written."""
    try:
        await api().merge_patch(cluster_path(namespace, name) + "/status", {"status": status})
    except KubernetesError as error:  # e.g. deleted meanwhile; never silent
        log.warning("%s/%s: status not written: %s", namespace, name, error)
        return False
    return True


class SecretProblem(Exception):
    """The password Secret the user named is missing or unusable; fixed by the user, retried."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def cluster_password(cluster: RedisCluster) -> str:
    """The cluster's password: from its Secret, which is generated when the user named none."""
    path = f"/api/v1/namespaces/{cluster.namespace}/secrets/{cluster.secret_name}"
    try:
        secret = await api().get(path)
    except KubernetesError as error:
        if not error.not_found:
            raise
        if cluster.auth_secret is not None:
            raise SecretProblem(
                "SecretMissing",
                f"spec.auth.secretName: no Secret {cluster.secret_name!r} in namespace "
                f"{cluster.namespace!r}; create it with a {PASSWORD_KEY!r} key",
            ) from error
        generated = build_secret(cluster, secrets.token_urlsafe(PASSWORD_BYTES))
        with contextlib.suppress(KubernetesError):
            await api().create(f"/api/v1/namespaces/{cluster.namespace}/secrets", generated)
        secret = await api().get(path)
    return _password_in(secret, cluster.secret_name)


def _password_in(secret: JSON, name: str) -> str:
    encoded = (secret.get("data") or {}).get(PASSWORD_KEY)
    if not encoded:
        raise SecretProblem("SecretInvalid", f"Secret {name!r} has no {PASSWORD_KEY!r} key")
    try:
        password = base64.b64decode(encoded, validate=True).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise SecretProblem(
            "SecretInvalid", f"Secret {name!r}: {PASSWORD_KEY!r} is not UTF-8 text"
        ) from error
    if not password.strip() or "\n" in password or "\r" in password:
        raise SecretProblem(
            "SecretInvalid",
            f"Secret {name!r}: {PASSWORD_KEY!r} must be one non-blank line",
        )
    return password


async def _apply_owned(cluster: RedisCluster, password: str, say: Callable[[str], None]) -> None:
    if not cluster.network.enabled:  # turned off: the policy goes
        policy = build_network_policy(cluster, OPERATOR_NAMESPACE)
        try:
            await api().delete(object_path(policy))
        except KubernetesError as error:
            if not error.not_found:
                raise
    for obj in build_all(cluster, password, OPERATOR_NAMESPACE):
        if obj["kind"] == "Secret":
            continue  # created once, never overwritten (see _password)
        try:
            await api().apply(object_path(obj), obj)
        except KubernetesError as error:
            if obj["kind"] != "StatefulSet" or error.status != 422 or "Forbidden" not in str(error):
                raise
            # A field that cannot change in place (a volume claim template, the selector):
            # replace the StatefulSet but not its Pods (orphaned, they keep running and the new
            # StatefulSet adopts them; their volumes stay); the rolling update restarts them.
            say(f"replacing StatefulSet {obj['metadata']['name']}: {error.message[:200]}")
            await _replace_keeping_pods(object_path(obj))
            await api().apply(object_path(obj), obj)


async def _replace_keeping_pods(path: str) -> None:
    """Delete a StatefulSet with its Pods and volumes orphaned; return once it is gone."""
    try:
        await api().delete(path, {"propagationPolicy": "Orphan"})
    except KubernetesError as error:
        if not error.not_found:
            raise
    deadline = time.monotonic() + REPLACE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            await api().get(path)
        except KubernetesError as error:
            if error.not_found:
                return
            raise
        await asyncio.sleep(0.2)
    raise KubernetesError(504, "Timeout", f"{path} still exists after an orphaning delete")


async def _version_refusal(cluster: RedisCluster) -> str | None:
    """Why the cluster's data would not survive the server version spec.image asks for,
    judged against the image its StatefulSets run now; None when it would (or nothing runs)."""
    path = f"/apis/apps/v1/namespaces/{cluster.namespace}/statefulsets/{cluster.name}-0"
    try:
        running = await api().get(path)
    except KubernetesError as error:
        if error.not_found:
            return None
        raise
    containers = running["spec"]["template"]["spec"].get("containers") or [{}]
    old = version_of_image(str(containers[0].get("image", "")))
    new = version_of_image(cluster.image)
    if old is None or new is None:
        return None
    refusal = change_refusal(old, new)
    return None if refusal is None else f"spec.image {cluster.image} refused: {refusal}"


def shard_status(shard: ShardSummary) -> JSON:
    """One entry of status.shards: Pod names, as the CRD's status schema has them."""
    entry: JSON = {"index": shard.index, "replicas": list(shard.replicas), "slots": shard.slots}
    if shard.master is not None:
        entry["master"] = shard.master
    return entry


class ClusterRun:
    """The Reconciler of one RedisCluster, with the platform watch it feeds on."""

    def __init__(
        self,
        cluster: RedisCluster,
        password: str,
        body: JSON,
        generation: int,
        forgotten: dict[str, float],
        target_revision: str,
    ) -> None:
        self.cluster = cluster
        self.body = body
        self.generation = generation
        # A spec change refused before anything was applied (a version the data cannot
        # survive): said first in the status until the spec changes.
        self.refusal: str | None = None
        # spec.backup, when set: None while its schedule is valid, else why not (a condition).
        self.schedule_problem: str | None = _schedule_problem(body)
        self.stop = asyncio.Event()
        self.platform = KubernetesPlatform(
            api(), cluster.namespace, cluster.cluster, target_revision
        )
        self.pool = ClientPool(password)
        self.reconciler = Reconciler(
            cluster.cluster,
            self.platform,
            self.pool,
            self._report,
            _cluster_log(cluster),
            forgotten,
            formed=(body.get("status") or {}).get("phase")
            in ("Ready", "Healing", "Resharding", "Updating"),
            metrics=METRICS,
            metrics_label=f"{cluster.namespace}/{cluster.name}",
        )
        self._seen_events: set[tuple[float, str]] = set()
        self._last_status: JSON | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._statuses = LatestStatus(
            functools.partial(_patch_status, cluster.namespace, cluster.name)
        )
        # spec.restoreFrom: its state (status.restore), carried on from the last status.
        self.restore_source = parse_restore(body)
        self.restore_state: JSON | None = None
        if self.restore_source is not None:
            self.restore_state = dict((body.get("status") or {}).get("restore") or {})
        self._last_loop: LoopStatus | None = None
        self._formed = False  # the loop's last pass found the cluster Ready

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.platform.watch(self.stop), name="the Pod watch"),
            asyncio.create_task(self._loop(), name="the reconcile loop"),
        ]
        if self.restore_source is not None and self.restore_state is not None:
            restore = Restore(
                self.cluster, self.restore_source, self.restore_state, self.platform,
                self.pool, lambda: self._formed, self._restore_report,
            )  # fmt: skip
            self._tasks.append(asyncio.create_task(restore.run(), name=RESTORE_TASK))

    def _restore_report(self, state: JSON) -> None:
        self.restore_state = state
        if self._last_loop is not None:
            self._report(self._last_loop)

    async def _loop(self) -> None:
        await self.platform.synced.wait()
        await self.reconciler.run(self.stop)

    def ended(self) -> str | None:
        """Why the loop, the platform's watch or the restore ended while the run was not
        stopped (a dead loop heals nothing, a dead watch leaves the loop looking at old Pods, a
        restore that raised leaves the cluster Restoring); None while they run. A restore that
        returned is done (Complete or Failed, its state says which), not dead."""
        if self.stop.is_set():
            return None
        for task in self._tasks:
            if task.done():
                what = task.get_name()
                if task.cancelled():
                    return f"{what} was cancelled"
                error = task.exception()
                if error is None and what == RESTORE_TASK:
                    continue
                return f"{what} ended" + (f": {type(error).__name__}: {error}" if error else "")
        return None

    async def close(self) -> None:
        self.stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._statuses.finish(STATUS_WRITE_WAIT_S)
        await self.pool.close()

    def _report(self, status: LoopStatus) -> None:
        for event in status.events:
            key = (event.at, event.message)
            if key not in self._seen_events:
                self._seen_events.add(key)
                _post_event(self.body, event.message)
        self._last_loop = status
        total = len(self.platform.members())
        ready = status.phase is Phase.READY
        self._formed = ready
        first = (*([self.refusal] if self.refusal else []), *self.platform.pod_problems())
        problems = [*first, *status.problems]
        message = status.headline(first)
        phase = status.phase.value
        restore = self.restore_state or {}
        if restore.get("phase") == "Failed":  # never Ready: the keys are not all there
            phase, ready, message = "Failed", False, f"restore failed: {restore.get('message')}"
        elif self.restore_state is not None and restore.get("phase") != "Complete" and ready:
            phase, ready = "Restoring", False
            message = f"restoring from {restore.get('source', '')}: {restore.get('message', '')}"
        if phase != status.phase.value:  # the metric says what the status says
            METRICS.record_phase(self.reconciler.metrics_label, phase)
        rollout = status.rollout
        new_status: JSON = {
            "phase": phase,
            "restore": self.restore_state,
            "readyNodes": f"{status.healthy_members}/{total}",
            "observedGeneration": self.generation,
            "message": message[:1000],
            "problems": [problem[:300] for problem in problems[:MAX_PROBLEMS]],
            "shards": [shard_status(shard) for shard in status.shards],
            "currentRevision": rollout.current_revision if rollout else None,
            "updateRevision": rollout.update_revision if rollout else None,
            "updatedNodes": f"{rollout.updated}/{rollout.total}" if rollout else None,
            "migration": None
            if status.migration is None
            else {
                "slotsMoved": status.migration.slots_moved,
                "slotsToMove": status.migration.slots_left,
                "keysMoved": status.migration.keys_moved,
            },
            "conditions": [
                _condition("Ready", ready, "ClusterOk" if ready else "NotReady", message),
                _condition("Progressing", not ready, "Reconciling", status.step),
                _condition(
                    "Resharding",
                    status.migration is not None,
                    "MovingSlots" if status.migration is not None else "Balanced",
                    status.migration.describe()
                    if status.migration is not None
                    else "no slot to move",
                ),
                _condition(
                    "Updating",
                    bool(rollout and not rollout.done) or status.phase is Phase.UPDATING,
                    "RollingUpdate" if rollout and not rollout.done else "UpToDate",
                    rollout.describe() if rollout else "no revisions yet",
                ),
                _condition(
                    "Degraded",
                    bool(problems) and status.phase is Phase.HEALING,
                    "Healing" if problems else "Healthy",
                    message,
                ),
            ],
        }
        if "backup" in (self.body.get("spec") or {}):
            problem = self.schedule_problem
            new_status["conditions"].append(
                _condition(
                    "BackupScheduled",
                    problem is None,
                    "InvalidSchedule" if problem else "Scheduled",
                    problem or "the operator creates a RedisClusterBackup when it is due",
                )
            )
        if self.restore_state is not None:
            new_status["conditions"].append(
                _condition(
                    "Restored",
                    restore.get("phase") == "Complete",
                    "Restore" + str(restore.get("phase") or "Pending"),
                    str(restore.get("message") or "waiting for the cluster to form"),
                )
            )
        comparable = {k: v for k, v in new_status.items() if k != "conditions"}
        comparable["backup schedule problem"] = self.schedule_problem  # compared, not written
        if comparable != self._last_status or self._statuses.failed:
            self._last_status = comparable
            self._statuses.offer(new_status)


def _schedule_problem(body: JSON) -> str | None:
    """Why spec.backup cannot be scheduled (a bad cron expression, keep, or S3 field); None when
    it can or there is none. The cluster runs on either way."""
    try:
        parse_schedule(body)
    except SpecError as error:
        return str(error)
    return None


def _cluster_log(cluster: RedisCluster) -> Callable[[str], None]:
    """Log lines named for their cluster (one operator serves many)."""
    return lambda message: log.info("%s/%s: %s", cluster.namespace, cluster.name, message)


def _say_and_post(say: Callable[[str], None], body: JSON, message: str) -> None:
    say(message)
    _post_event(body, message)


def _post_event(body: JSON, message: str) -> None:
    """An action worth telling the user, as a Kubernetes Event on the object."""
    failed = message.startswith("failed")
    (kopf.warn if failed else kopf.info)(
        as_body(body), reason="Failed" if failed else "Reconciling", message=message
    )


def _failure_reason(error: Exception) -> str:
    """The condition reason for a pass that could not apply the spec."""
    if isinstance(error, SpecError):
        return "InvalidSpec"  # the user must change the spec
    if isinstance(error, SecretProblem):
        return error.reason  # the user must fix the Secret; retried every pass
    return "ApplyFailed"  # the API refused or failed; retried every pass


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's own calls (watches, Events, status) use the operator's credentials too, with every
    kind of kubeconfig user (exec plugins included). kopf calls this again on a 401 and at the
    token's expiry, so the token is renewed each time."""
    credentials = api().credentials
    token = await credentials.tokens.token(renew=True) if credentials.tokens else None
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=credentials.ca_path,
        token=token.value if token else None,
        scheme="Bearer" if token else None,
        certificate_path=credentials.certificate_path,
        private_key_path=credentials.private_key_path,
        default_namespace=credentials.namespace,
        expiration=token.expires if token else None,
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf's settings; and no finalizer on RedisClusters.

    A finalizer would protect nothing: the objects a RedisCluster owns go with it through their
    ownerReferences (garbage collection), and the daemon ends itself once its object is gone
    (the read in `run_cluster` answers 404). But with one, `kubectl delete rdc` hangs while no
    operator runs. kopf puts a finalizer on every object that has a daemon, with no option to
    turn it off (its maintainer declined one: nolar/kopf#896, #1183), so the daemon handler is
    registered again as not requiring one. This runs before kopf watches anything. The name stays
    set so that kopf removes the finalizer older redkube versions put on existing objects.
    """
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 60
    settings.persistence.finalizer = "redkube.io/daemon"
    spawning = kopf.get_default_registry()._spawning
    spawning._handlers[:] = [
        dataclasses.replace(handler, requires_finalizer=False) for handler in spawning._handlers
    ]


# kopf's daemons require a finalizer; configure() drops that requirement (see there).
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=15.0)
async def run_cluster(
    name: str, namespace: str | None, uid: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    namespace = namespace or "default"
    run: ClusterRun | None = None
    applied_generation = -1
    last_failure: tuple[str, str] | None = None
    drifted: dict[str, str] = {}  # changes others made to owned objects, not yet undone
    forgotten: dict[str, float] = {}  # node IDs the loop forgot (banned a while), across runs
    try:
        while not stopped:
            try:
                body = await api().get(cluster_path(namespace, name))
            except KubernetesError as error:
                if error.not_found:
                    return
                log.warning("%s/%s: %s", namespace, name, error)
                await stopped.wait(RESYNC_S)
                continue
            if uid is not None and body["metadata"].get("uid") != uid:
                return  # deleted and created again: the new object's own daemon serves it
            if run is not None and (why := run.ended()) is not None:
                log.error("%s/%s: %s; starting it again", namespace, name, why)
                await run.close()
                run, applied_generation = None, -1
            generation = int(body["metadata"].get("generation", 0))
            drifted.update(take_drift(namespace, name))
            if drifted:
                drifted = await still_drifted(api(), drifted)
            try:
                cluster = parse(body)
                if generation != applied_generation or drifted:
                    say = _cluster_log(cluster)
                    if drifted and generation == applied_generation:
                        owned = [
                            o
                            for o in build_all(cluster, "", OPERATOR_NAMESPACE)
                            if o["kind"] != "Secret"
                        ]
                        drifted.update(await missing_owned(api(), owned))
                        message = "restoring owned objects: " + "; ".join(drifted.values())
                        say(message)
                        _post_event(body, message)
                    password = await cluster_password(cluster)
                    refusal = await _version_refusal(cluster)
                    if refusal is not None:
                        if run is None:  # heal what runs; roll nothing
                            run = ClusterRun(cluster, password, body, generation, forgotten, "")
                            run.start()
                        if run.refusal != refusal:
                            say(refusal)
                            kopf.warn(as_body(body), reason="UpdateRefused", message=refusal)
                        run.refusal = refusal
                        await stopped.wait(RESYNC_S)
                        continue
                    await hand_over_before_scale_in(
                        api(), cluster, password, functools.partial(_post_event, body), say
                    )
                    await _apply_owned(
                        cluster, password, functools.partial(_say_and_post, say, body)
                    )
                    if run is None or run.cluster.cluster != cluster.cluster:
                        if run is not None:
                            await run.close()
                        run = ClusterRun(
                            cluster, password, body, generation, forgotten, revision(cluster)
                        )
                        run.start()
                    run.cluster = cluster
                    run.body = body
                    run.schedule_problem = _schedule_problem(body)
                    run.refusal = None
                    run.platform.target_revision = revision(cluster)
                    run.generation = generation
                    applied_generation = generation
                    drifted = {}
                last_failure = None
            except (SpecError, SecretProblem, KubernetesError) as error:
                reason = _failure_reason(error)
                if (reason, str(error)) != last_failure:  # one Event per distinct failure
                    kopf.warn(as_body(body), reason=reason, message=str(error))
                last_failure = (reason, str(error))
                await _patch_status(
                    namespace,
                    name,
                    {
                        "phase": "Failed" if reason == "InvalidSpec" else "Pending",
                        "message": str(error)[:1000],
                        "observedGeneration": generation,
                        "conditions": [
                            _condition("Ready", False, reason, str(error)),
                            _condition("Degraded", True, reason, str(error)),
                        ],
                    },
                )
                if isinstance(error, SpecError):
                    applied_generation = generation  # retried when the spec changes
            await stopped.wait(RESYNC_S)
    finally:
        if run is not None:
            await run.close()
        METRICS.forget(f"{namespace}/{name}")
