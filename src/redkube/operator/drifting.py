"""kopf watches on the objects RedisClusters own: a change by anyone else marks the cluster, and
its daemon applies its objects again on its next pass (like controller-runtime's Owns())."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from redkube.kubernetes.building import CLUSTER_LABEL
from redkube.kubernetes.ownership import OWNED_KINDS, drift, owning_cluster
from redkube.platform.kubernetes.api import (
    FIELD_MANAGER,
    KubernetesApi,
    KubernetesError,
    object_path,
)

_drifted: dict[tuple[str, str], dict[str, str]] = {}
"""Per cluster: the REST path of each object others changed, and the latest such change."""


def take_drift(namespace: str, name: str) -> dict[str, str]:
    """What others changed in the cluster's objects since the last call (and forget it)."""
    return _drifted.pop((namespace, name), {})


async def still_drifted(api: KubernetesApi, changes: dict[str, str]) -> dict[str, str]:
    """The changes that the objects show now.

    An event can arrive after the apply that undid its change: a StatefulSet's status written
    between a `kubectl scale` and our apply still carries kubectl's managed fields. So each
    change is read again from the object as it is (level-triggered), and only what remains is
    drift. An object that is gone, or cannot be read, keeps its change: applying once more is
    harmless.
    """
    remaining: dict[str, str] = {}
    for path, change in changes.items():
        try:
            current = await api.get(path)
        except KubernetesError:
            remaining[path] = change  # deleted (the event said so), or unreadable
            continue
        now = drift("MODIFIED", current, FIELD_MANAGER)
        if now is not None:
            remaining[path] = now
    return remaining


async def missing_owned(api: KubernetesApi, objects: list[dict[str, Any]]) -> dict[str, str]:
    """Owned objects that are gone now, as drift: read when the daemon restores others, so that
    its Event names every object it brings back, even one deleted after the change that woke it
    (whose own DELETED event may arrive after the apply recreated it)."""
    missing: dict[str, str] = {}
    for obj in objects:
        path = object_path(obj)
        try:
            await api.get(path)
        except KubernetesError as error:
            if error.not_found:
                missing[path] = f"{obj['kind']} {obj['metadata']['name']} was deleted"
    return missing


async def owned_object_event(event: kopf.RawEvent, namespace: str | None, **_: Any) -> None:
    raw = dict(event["object"])
    cluster = owning_cluster(raw)
    change = drift(event.get("type"), raw, FIELD_MANAGER)
    if cluster is None or change is None:
        return
    try:
        path = object_path(raw)
    except KeyError:
        return  # not a kind the operator applies
    _drifted.setdefault((namespace or "default", cluster), {})[path] = change


class _QuietWatch(logging.Filter):
    """kopf logs every call of an event handler ("Handler ... succeeded.") at INFO; for these
    watches that is one line per status change of every owned object, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != f"Handler {owned_object_event.__name__!r} succeeded."


logging.getLogger("kopf.objects").addFilter(_QuietWatch())

for _group, _version, _plural in OWNED_KINDS:
    kopf.on.event(_group, _version, _plural, labels={CLUSTER_LABEL: kopf.PRESENT})(
        owned_object_event
    )
