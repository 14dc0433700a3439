"""RedisClusterBackup objects and a RedisCluster's `spec.backup` (its schedule), read into plain
values; and the objects a schedule creates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redkube.kubernetes.backup_resources import KIND, PLURAL
from redkube.kubernetes.building import CLUSTER_LABEL
from redkube.kubernetes.resources import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_BACKUPS_KEPT,
    DEFAULT_SECRET_KEY,
    GROUP,
    VERSION,
)
from redkube.model.schedules import Schedule, ScheduleError
from redkube.model.specs import SpecError

SCHEDULED_LABEL = "redkube.io/scheduled"  # "true" on the backups a schedule made (and deletes)


def backup_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{path}/{name}" if name else path


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    secret: str  # the credentials Secret, in the cluster's namespace
    access_key_key: str
    secret_key_key: str

    def location(self, backup: str) -> str:
        """Where the backup named ``backup`` is kept."""
        return "/".join(["s3:/", self.bucket, *(p for p in (self.prefix, backup) if p)])


def _s3(raw: Any, where: str, default_prefix: str) -> S3Target:
    if not isinstance(raw, Mapping) or not raw.get("bucket"):
        raise SpecError(f"{where} must name a bucket")
    secret = raw.get("credentialsSecret")
    if not isinstance(secret, Mapping) or not secret.get("name"):
        raise SpecError(f"{where}.credentialsSecret must name a Secret")
    prefix = str(raw.get("prefix", default_prefix)).strip("/")
    return S3Target(
        bucket=str(raw["bucket"]),
        prefix=prefix,
        endpoint=raw.get("endpoint") or None,
        region=raw.get("region") or None,
        secret=str(secret["name"]),
        access_key_key=str(secret.get("accessKeyIdKey", DEFAULT_ACCESS_KEY)),
        secret_key_key=str(secret.get("secretAccessKeyKey", DEFAULT_SECRET_KEY)),
    )


@dataclass(frozen=True)
class BackupObject:
    """One RedisClusterBackup."""

    name: str
    namespace: str
    cluster: str
    target: S3Target
    consistent: bool = False

    @property
    def location(self) -> str:
        return self.target.location(self.name)


def parse_backup(obj: Mapping[str, Any]) -> BackupObject:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    cluster = str(spec.get("cluster") or "")
    if not cluster:
        raise SpecError("spec.cluster must name a RedisCluster")
    target = _s3(spec.get("s3"), "spec.s3", f"{namespace}/{cluster}")
    consistent = _flag(spec.get("consistent", False), "spec.consistent")
    return BackupObject(str(meta.get("name", "")), namespace, cluster, target, consistent)


def _flag(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise SpecError(f"{where} must be true or false (got {raw!r})")
    return raw


@dataclass(frozen=True)
class BackupSchedule:
    """A RedisCluster's spec.backup."""

    schedule: Schedule
    keep: int
    target: S3Target
    consistent: bool = False


def parse_schedule(obj: Mapping[str, Any]) -> BackupSchedule | None:
    """The RedisCluster's spec.backup; None when it has none."""
    meta = obj.get("metadata") or {}
    raw = (obj.get("spec") or {}).get("backup")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("spec.backup must be an object")
    try:
        schedule = Schedule.parse(str(raw.get("schedule", "")))
    except ScheduleError as error:
        raise SpecError(f"spec.backup.schedule: {error}") from error
    keep = raw.get("keep", DEFAULT_BACKUPS_KEPT)
    if not isinstance(keep, int) or keep < 1:
        raise SpecError(f"spec.backup.keep must be a whole number from 1 (got {keep!r})")
    namespace = str(meta.get("namespace") or "default")
    default_prefix = f"{namespace}/{meta.get('name', '')}"
    target = _s3(raw.get("s3"), "spec.backup.s3", default_prefix)
    consistent = _flag(raw.get("consistent", False), "spec.backup.consistent")
    return BackupSchedule(schedule, keep, target, consistent)


def scheduled_name(cluster: str, due: datetime) -> str:
    return f"{cluster}-{due.strftime('%Y%m%d%H%M%S')}"


def build_scheduled_backup(
    cluster: Mapping[str, Any], schedule: BackupSchedule, due: datetime
) -> dict[str, Any]:
    """The RedisClusterBackup a schedule creates when due. Its name is the due time, so two
    operators (or one restarted) creating it for the same time make one object. No
    ownerReference: deleting the cluster keeps its backups (they are for restoring it)."""
    meta = cluster["metadata"]
    s3: dict[str, Any] = {
        "bucket": schedule.target.bucket,
        "prefix": schedule.target.prefix,
        "credentialsSecret": {
            "name": schedule.target.secret,
            "accessKeyIdKey": schedule.target.access_key_key,
            "secretAccessKeyKey": schedule.target.secret_key_key,
        },
    }
    if schedule.target.endpoint:
        s3["endpoint"] = schedule.target.endpoint
    if schedule.target.region:
        s3["region"] = schedule.target.region
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": scheduled_name(str(meta["name"]), due),
            "namespace": meta.get("namespace") or "default",
            "labels": {CLUSTER_LABEL: str(meta["name"]), SCHEDULED_LABEL: "true"},
        },
        "spec": {"cluster": str(meta["name"]), "consistent": schedule.consistent, "s3": s3},
    }


def expired(backups: list[Mapping[str, Any]], keep: int) -> list[str]:
    """The scheduled backups to delete: the complete ones beyond the newest ``keep`` (by name:
    the due time), and failed ones older than the oldest kept (a later success replaced them).
    Running ones are never deleted."""

    def phase(b: Mapping[str, Any]) -> str:
        return str((b.get("status") or {}).get("phase", ""))

    names = sorted((str(b["metadata"]["name"]), phase(b)) for b in backups)
    complete = [n for n, p in names if p == "Complete"]
    kept = complete[-keep:]
    if not kept:
        return []
    oldest_kept = kept[0]
    return [n for n, p in names if n < oldest_kept and p in ("Complete", "Failed")]


@dataclass(frozen=True)
class RestoreSource:
    """A RedisCluster's spec.restoreFrom: a RedisClusterBackup of its namespace by name, or a
    backup's own place in S3 (its prefix is the backup's folder)."""

    backup: str | None
    target: S3Target | None

    def describe(self) -> str:
        if self.backup is not None:
            return f"backup {self.backup}"
        assert self.target is not None
        return self.target.location("")


def parse_restore(obj: Mapping[str, Any]) -> RestoreSource | None:
    raw = (obj.get("spec") or {}).get("restoreFrom")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or ("backup" in raw) == ("s3" in raw):
        raise SpecError("spec.restoreFrom must name either a backup or an s3 location")
    if "backup" in raw:
        return RestoreSource(str(raw["backup"]), None)
    return RestoreSource(None, _s3(raw["s3"], "spec.restoreFrom.s3", ""))
