"""Which objects a RedisCluster owns, and whether a change to one came from someone else.

The operator applies its objects when the spec changes. Anyone else's change to them (a
`kubectl scale` of a StatefulSet, a deleted Service, an edited ConfigMap) is drift, and the
operator applies its objects again. Status written by Kubernetes' own controllers is not drift.
"""

from __future__ import annotations

from redkube.kubernetes.building import API_VERSION, JSON, KIND

OWNED_KINDS: tuple[tuple[str, str, str], ...] = (
    ("apps", "v1", "statefulsets"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
)
"""(group, version, plural) of every kind the operator applies and then watches for drift. The
password Secret is left out on purpose: it is created once and never overwritten."""


def owning_cluster(body: JSON) -> str | None:
    """The name of the RedisCluster that controls this object, if one does."""
    for reference in body.get("metadata", {}).get("ownerReferences") or []:
        if (
            reference.get("apiVersion") == API_VERSION
            and reference.get("kind") == KIND
            and reference.get("controller")
        ):
            return str(reference["name"])
    return None


def drift(event_type: str | None, body: JSON, manager: str) -> str | None:
    """What someone other than `manager` did to an owned object, or None when this event shows
    no such change (our own apply, a controller writing status, the initial listing)."""
    metadata = body.get("metadata", {})
    what = f"{body.get('kind', 'object')} {metadata.get('name', '?')}"
    if event_type == "DELETED":
        return f"{what} was deleted"
    if event_type is None:
        return None  # kopf's initial listing: the daemon applies everything when it starts
    others = sorted(
        {
            entry.get("manager", "?")
            for entry in metadata.get("managedFields") or []
            if entry.get("manager") != manager and entry.get("subresource") != "status"
        }
    )
    if others:
        return f"{what} was changed by {', '.join(others)}"
    return None
