"""kopf handlers: one daemon per RedisCluster runs the shared reconcile loop on its Pods.

The daemon is level-triggered: every few seconds it reads the object again, applies the objects
the cluster owns when the spec changed (server-side apply; the password Secret only if absent),
and keeps one Reconciler running with the Kubernetes platform. The Reconciler's reports become
the object's status, its actions Kubernetes Events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from typing import Any, cast

import kopf

from redkube.admin.connections import ClientPool
from redkube.control.reconciling import Reconciler
from redkube.control.statuses import LoopStatus, Phase
from redkube.kubernetes.building import build_all, build_secret
from redkube.kubernetes.clusters import RedisCluster, parse
from redkube.model.specs import SpecError
from redkube.platform.kubernetes.api import (
    JSON,
    KubernetesApi,
    KubernetesError,
    load_credentials,
    object_path,
)
from redkube.platform.kubernetes.pods import KubernetesPlatform

GROUP, VERSION, PLURAL = "redkube.io", "v1alpha1", "redisclusters"
RESYNC_S = 5.0
PASSWORD_BYTES = 24

log = logging.getLogger("redkube.operator")
_api: KubernetesApi | None = None


def api() -> KubernetesApi:
    global _api
    if _api is None:
        _api = KubernetesApi(load_credentials())
    return _api


def as_body(obj: JSON) -> kopf.Body:
    """A plain object as kopf's Body, for posting Events about it."""
    return kopf.Body(cast(kopf.RawBody, obj))


def cluster_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


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


async def _patch_status(namespace: str, name: str, status: JSON) -> None:
    try:
        await api().merge_patch(cluster_path(namespace, name) + "/status", {"status": status})
    except KubernetesError as error:  # e.g. deleted meanwhile; never silent
        log.warning("%s/%s: status not written: %s", namespace, name, error)


async def _password(cluster: RedisCluster) -> str:
    """The cluster's password: from its Secret, which is generated when the user named none."""
    path = f"/api/v1/namespaces/{cluster.namespace}/secrets/{cluster.secret_name}"
    try:
        secret = await api().get(path)
    except KubernetesError as error:
        if not error.not_found or cluster.auth_secret is not None:
            raise
        generated = build_secret(cluster, secrets.token_urlsafe(PASSWORD_BYTES))
        with contextlib.suppress(KubernetesError):
            await api().create(f"/api/v1/namespaces/{cluster.namespace}/secrets", generated)
        secret = await api().get(path)
    return base64.b64decode(secret["data"]["password"]).decode()


async def _apply_owned(cluster: RedisCluster, password: str) -> None:
    for obj in build_all(cluster, password):
        if obj["kind"] == "Secret":
            continue  # created once, never overwritten (see _password)
        await api().apply(object_path(obj), obj)


class ClusterRun:
    """The Reconciler of one RedisCluster, with the platform watch it feeds on."""

    def __init__(self, cluster: RedisCluster, password: str, body: JSON, generation: int) -> None:
        self.cluster = cluster
        self.body = body
        self.generation = generation
        self.stop = asyncio.Event()
        self.platform = KubernetesPlatform(api(), cluster.namespace, cluster.cluster)
        self.pool = ClientPool(password)
        self.reconciler = Reconciler(
            cluster.cluster, self.platform, self.pool, self._report, log.info
        )
        self._seen_events: set[tuple[float, str]] = set()
        self._last_status: JSON | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.platform.watch(self.stop)),
            asyncio.create_task(self._loop()),
        ]

    async def _loop(self) -> None:
        await self.platform.synced.wait()
        await self.reconciler.run(self.stop)

    async def close(self) -> None:
        self.stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pool.close()

    def _report(self, status: LoopStatus) -> None:
        for event in status.events:
            key = (event.at, event.message)
            if key not in self._seen_events:
                self._seen_events.add(key)
                failed = event.message.startswith("failed")
                (kopf.warn if failed else kopf.info)(
                    as_body(self.body),
                    reason="Failed" if failed else "Reconciling",
                    message=event.message,
                )
        members = self.platform.members()
        total = len(members)
        running = sum(m.running for m in members)
        ready = status.phase is Phase.READY
        message = "; ".join(status.problems) or status.step
        new_status: JSON = {
            "phase": status.phase.value,
            "readyNodes": f"{running}/{total}",
            "observedGeneration": self.generation,
            "message": message[:1000],
            "conditions": [
                _condition("Ready", ready, "ClusterOk" if ready else "NotReady", message),
                _condition("Progressing", not ready, "Reconciling", status.step),
                _condition(
                    "Degraded",
                    bool(status.problems) and status.phase is Phase.HEALING,
                    "Healing" if status.problems else "Healthy",
                    message,
                ),
            ],
        }
        comparable = {k: v for k, v in new_status.items() if k != "conditions"}
        if comparable != self._last_status:
            self._last_status = comparable
            asyncio.get_running_loop().create_task(
                _patch_status(self.cluster.namespace, self.cluster.name, new_status)
            )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 60
    settings.persistence.finalizer = "redkube.io/daemon"


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=15.0)
async def run_cluster(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    namespace = namespace or "default"
    run: ClusterRun | None = None
    applied_generation = -1
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
            generation = int(body["metadata"].get("generation", 0))
            try:
                cluster = parse(body)
                if generation != applied_generation:
                    password = await _password(cluster)
                    await _apply_owned(cluster, password)
                    if run is None or run.cluster.cluster != cluster.cluster:
                        if run is not None:
                            await run.close()
                        run = ClusterRun(cluster, password, body, generation)
                        run.start()
                    run.generation = generation
                    applied_generation = generation
            except (SpecError, KubernetesError) as error:
                reason = "InvalidSpec" if isinstance(error, SpecError) else "ApplyFailed"
                kopf.warn(as_body(body), reason=reason, message=str(error))
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
