"""kopf watches on the objects RedisClusters own: a change by anyone else marks the cluster, and
its daemon applies its objects again on its next pass (like controller-runtime's Owns())."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from redkube.kubernetes.building import CLUSTER_LABEL
from redkube.kubernetes.ownership import OWNED_KINDS, drift, owning_cluster
from redkube.platform.kubernetes.api import FIELD_MANAGER

_drifted: dict[tuple[str, str], list[str]] = {}


def take_drift(namespace: str, name: str) -> list[str]:
    """What others changed in the cluster's objects since the last call (and forget it)."""
    return _drifted.pop((namespace, name), [])


async def owned_object_event(event: kopf.RawEvent, namespace: str | None, **_: Any) -> None:
    raw = dict(event["object"])
    cluster = owning_cluster(raw)
    change = drift(event.get("type"), raw, FIELD_MANAGER)
    if cluster is None or change is None:
        return
    changes = _drifted.setdefault((namespace or "default", cluster), [])
    if change not in changes:
        changes.append(change)


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
