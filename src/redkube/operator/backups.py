"""kopf handlers for backups: one daemon per RedisClusterBackup takes it, and one per
RedisCluster with `spec.backup` creates them on schedule and deletes the expired ones.

A backup is level-triggered like the rest: its daemon reads the object; Complete or Failed, it
is done. Running means an operator died during it: the store may hold some shards' objects and
no manifest (such a backup is never offered for restore); they are removed and the backup taken
again (`status.attempts` counts). A manifest there means it had finished: it is checked and
marked Complete. A backup never shows Complete before its manifest is written and every shard
object is found at its size.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.observing import observe
from redkube.control.backing_up import back_up_streamed, read_manifest
from redkube.kubernetes.backup_resources import PLURAL as BACKUP_PLURAL
from redkube.kubernetes.backups import (
    SCHEDULED_LABEL,
    BackupObject,
    backup_path,
    build_scheduled_backup,
    expired,
    parse_backup,
    parse_schedule,
)
from redkube.kubernetes.building import CLUSTER_LABEL
from redkube.kubernetes.clusters import cluster_path, parse
from redkube.kubernetes.resources import GROUP, PLURAL, VERSION
from redkube.model.backups import MANIFEST, BackupError, BackupManifest, NotNow
from redkube.model.specs import SpecError
from redkube.operator.api_client import api
from redkube.operator.backup_stores import open_backup_store, remove_objects
from redkube.operator.handlers import (
    RESYNC_S,
    SecretProblem,
    _condition,
    _now,
    as_body,
    cluster_password,
)
from redkube.operator.status_writing import LatestStatus
from redkube.platform.kubernetes.api import JSON, KubernetesError
from redkube.platform.kubernetes.pods import KubernetesPlatform
from redkube.platform.stores import Store

HEALTHY_WAIT_S = 300.0  # a backup waits this long for its cluster to be healthy, then fails
HEALTHY_RETRY_S = 5.0

log = logging.getLogger("redkube.operator")


class BackupWait(Exception):
    """The backup cannot begin yet (its cluster is missing or unhealthy); retried."""


def _complete_status(manifest: BackupManifest, location: str) -> JSON:
    message = f"{len(manifest.shards)} shards, {manifest.keys:,} keys"
    if manifest.consistent:
        message += f"; one point in time, writes paused {manifest.paused_ms:.0f} ms"
    return {
        "phase": "Complete",
        "message": message,
        "progress": f"{len(manifest.shards)}/{len(manifest.shards)}",
        "location": location,
        "size": sum(s.size for s in manifest.shards),
        "keys": manifest.keys,
        "server": manifest.server,
        "pausedMs": round(manifest.paused_ms) if manifest.consistent else None,
        "completedAt": _now(),
        "conditions": [_condition("Complete", True, "BackupComplete", location)],
    }


async def _take(
    backup: BackupObject, store: Store, offer: Callable[[JSON], None]
) -> BackupManifest:
    """Wait (named in the status) until the cluster can be backed up, then take the backup."""
    deadline = time.monotonic() + HEALTHY_WAIT_S
    while True:
        try:
            return await _take_once(backup, store, offer)
        except BackupWait as wait:
            if time.monotonic() > deadline:
                raise BackupError(f"{wait} (waited {HEALTHY_WAIT_S:.0f}s)") from wait
            offer({"message": f"waiting: {wait}"})
            await asyncio.sleep(HEALTHY_RETRY_S)


async def _take_once(
    backup: BackupObject, store: Store, offer: Callable[[JSON], None]
) -> BackupManifest:
    try:
        body = await api().get(cluster_path(backup.namespace, backup.cluster))
    except KubernetesError as error:
        if error.not_found:
            raise BackupWait(f"no RedisCluster {backup.cluster!r}") from error
        raise
    cluster = parse(body)
    if (body.get("status") or {}).get("phase") != "Ready":
        raise BackupWait(f"RedisCluster {backup.cluster!r} is not Ready")
    platform = KubernetesPlatform(api(), cluster.namespace, cluster.cluster)
    await platform.refresh()
    pool = ClientPool(await cluster_password(cluster))
    try:
        observation = await observe(platform.members(), pool)
        with tempfile.TemporaryDirectory(prefix="redkube-backup-") as work:
            return await back_up_streamed(
                cluster.cluster,
                next((v.version for v in observation.views() if v.version), cluster.image),
                observation,
                pool,
                store,
                Path(work),
                lambda message: offer({"message": message}),
                lambda done, of: offer({"progress": f"{done}/{of}"}),
                backup.consistent,
            )
    except NotNow as error:
        raise BackupWait(str(error)) from error
    finally:
        await pool.close()


async def _backup_status(namespace: str, name: str, status: JSON) -> bool:
    try:
        await api().merge_patch(backup_path(namespace, name) + "/status", {"status": status})
    except KubernetesError as error:
        log.warning("%s/%s: backup status not written: %s", namespace, name, error)
        return False
    return True


@kopf.daemon(GROUP, VERSION, BACKUP_PLURAL, cancellation_timeout=10.0)
async def run_backup(name: str, namespace: str | None, **_: Any) -> None:
    namespace = namespace or "default"
    try:
        body = await api().get(backup_path(namespace, name))
    except KubernetesError as error:
        if not error.not_found:
            log.warning("%s/%s: %s", namespace, name, error)
        return
    status = body.get("status") or {}
    if status.get("phase") in ("Complete", "Failed"):
        return
    writes = LatestStatus(lambda s: _backup_status(namespace, name, s))
    attempts = int(status.get("attempts") or 0) + 1
    store: Store | None = None  # once set, a failure removes the objects written to it
    try:
        backup = parse_backup(body)
        found = await open_backup_store(backup)
        begun = {
            "phase": "Running",
            "attempts": attempts,
            "location": backup.location,
            "startedAt": status.get("startedAt") or _now(),
            "message": "beginning",
        }
        finished = await asyncio.to_thread(found.read_text, MANIFEST) is not None
        if attempts == 1 and finished:
            raise BackupError(f"{backup.location} already holds a backup; choose another name")
        if finished:  # an operator stopped after the manifest, before the status
            manifest = await asyncio.to_thread(read_manifest, found)
            writes.offer(_complete_status(manifest, backup.location))
            return
        store = found
        if attempts > 1:  # an operator stopped during it
            removed = await remove_objects(store)
            begun["message"] = (
                f"began again (attempt {attempts}): the operator stopped during the last one"
                + (f"; removed its {len(removed)} objects" if removed else "")
            )
            kopf.info(as_body(body), reason="BackupRestarted", message=str(begun["message"]))
        writes.offer(begun)

        def offer(change: JSON) -> None:
            begun.update(change)
            writes.offer(dict(begun))

        manifest = await _take(backup, store, offer)
        await asyncio.to_thread(read_manifest, store)  # every object there, at its size
        done = _complete_status(manifest, backup.location)
        writes.offer(done)
        kopf.info(as_body(body), reason="BackupComplete", message=f"{backup.location}: "
                  f"{done['message']}, {done['size']:,} bytes")  # fmt: skip
        log.info("%s/%s: backup complete in %s", namespace, name, backup.location)
    except (BackupError, AdminError, SpecError, SecretProblem, KubernetesError) as error:
        message = str(error)
        if store is not None:
            try:
                await remove_objects(store)  # a failed backup leaves nothing behind
            except BackupError as cleanup:
                message += f" (and its objects could not be removed: {cleanup})"
        writes.offer({
            "phase": "Failed",
            "message": message[:1000],
            "attempts": attempts,
            "completedAt": _now(),
            "conditions": [_condition("Complete", False, "BackupFailed", message)],
        })  # fmt: skip
        kopf.warn(as_body(body), reason="BackupFailed", message=message)
        log.warning("%s/%s: backup failed: %s", namespace, name, message)
    finally:
        await writes.finish(RESYNC_S)


# -- schedules -----------------------------------------------------------------------------------


async def _expire(namespace: str, cluster: str, keep: int, body: JSON) -> None:
    """Delete the scheduled backups beyond the newest `keep` complete ones: their objects in
    the store first, then the RedisClusterBackup."""
    listing = await api().get(
        backup_path(namespace),
        {"labelSelector": f"{CLUSTER_LABEL}={cluster},{SCHEDULED_LABEL}=true"},
    )
    backups = {str(b["metadata"]["name"]): b for b in listing.get("items") or []}
    for name in expired(list(backups.values()), keep):
        old = parse_backup(backups[name])
        if (backups[name].get("status") or {}).get("phase") == "Complete":
            await remove_objects(await open_backup_store(old))
        try:
            await api().delete(backup_path(namespace, name))
        except KubernetesError as error:
            if not error.not_found:
                raise
        message = f"deleted backup {name} and its objects in {old.location} (keep {keep})"
        log.info("%s/%s: %s", namespace, cluster, message)
        kopf.info(as_body(body), reason="BackupDeleted", message=message)


@kopf.daemon(GROUP, VERSION, PLURAL, id="backup-schedule", cancellation_timeout=5.0)
async def run_backup_schedule(name: str, namespace: str | None, stopped: kopf.DaemonStopped,
                              **_: Any) -> None:  # fmt: skip
    """Each time spec.backup.schedule is due, a RedisClusterBackup named for the due time (so
    an operator restarted meanwhile makes the same one, not a second). Times missed while no
    operator ran are not made up for: the next due time counts."""
    namespace = namespace or "default"
    since = datetime.now(UTC)
    last_failure = ""
    while not stopped:
        try:
            body = await api().get(cluster_path(namespace, name))
        except KubernetesError as error:
            if error.not_found:
                return
            await stopped.wait(RESYNC_S)
            continue
        try:
            schedule = parse_schedule(body)
            if schedule is None:
                since = datetime.now(UTC)
                await stopped.wait(RESYNC_S)
                continue
            now = datetime.now(UTC)
            due = schedule.schedule.next_after(since)
            if due <= now:
                created = build_scheduled_backup(body, schedule, due)
                try:
                    await api().create(backup_path(namespace), created)
                    kopf.info(as_body(body), reason="BackupScheduled",
                              message=f"created {created['metadata']['name']}")  # fmt: skip
                except KubernetesError as error:
                    if not error.conflict:
                        raise
                since = now  # missed ones are skipped: one backup per due time at most
                due = schedule.schedule.next_after(since)
            await _expire(namespace, name, schedule.keep, body)
            last_failure = ""
            wait = min(RESYNC_S, max(0.0, (due - datetime.now(UTC)).total_seconds()))
        except (SpecError, BackupError, KubernetesError) as error:
            if str(error) != last_failure:
                kopf.warn(as_body(body), reason="BackupScheduleFailed", message=str(error))
                log.warning("%s/%s: backup schedule: %s", namespace, name, error)
            last_failure = str(error)
            wait = RESYNC_S
        await stopped.wait(wait)
