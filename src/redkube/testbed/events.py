"""Kubernetes Events as a kubelet records them (Started, Killing, BackOff, Unhealthy, ...)."""

from __future__ import annotations

import logging
import secrets

from redkube.testbed.apiclient import JSON, ApiClient, ApiError, timestamp

log = logging.getLogger("redkube.testbed.events")


def record(
    api: ApiClient, pod: JSON, reason: str, message: str, *, warning: bool = False, field: str = ""
) -> None:
    """Post one Event about `pod`; a failure is logged, never raised (events are best effort)."""
    meta = pod["metadata"]
    stamp = timestamp()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{secrets.token_hex(8)}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            **({"fieldPath": field} if field else {}),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        api.create(f"/api/v1/namespaces/{meta['namespace']}/events", event)
    except ApiError as error:
        log.warning("event %s for pod %s: %s", reason, meta["name"], error)
