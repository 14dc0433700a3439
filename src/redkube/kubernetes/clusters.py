"""A RedisCluster object read into typed values, with the CRD's defaults and checks.

The apiserver applies the same defaults and refuses the same mistakes (see `resources.py`);
this copy serves `redkube render`, which has no apiserver, and the operator, which must never
crash on an object that slipped past admission.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redkube.kubernetes.resources import (
    DEFAULT_IMAGE,
    FORBIDDEN_CONFIG_KEYS,
    GROUP,
    IMAGE_PATTERN,
    MAX_NODE_TIMEOUT_MS,
    MAX_REPLICAS,
    MAX_SHARDS,
    PLURAL,
    VERSION,
)
from redkube.model.specs import ClusterSpec, SpecError

IMAGE = re.compile(IMAGE_PATTERN)


def cluster_path(namespace: str, name: str) -> str:
    """The REST path of one RedisCluster object."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


@dataclass(frozen=True)
class Storage:
    size: str
    storage_class: str | None


@dataclass(frozen=True)
class Placement:
    topology_key: str = "kubernetes.io/hostname"
    required: bool = False
    zone_spread: bool = True


@dataclass(frozen=True)
class RedisCluster:
    """What one RedisCluster object asks for."""

    name: str
    namespace: str
    uid: str
    cluster: ClusterSpec
    image: str
    storage: Storage | None
    aof: bool
    auth_secret: str | None
    config: Mapping[str, str]
    placement: Placement
    resources: Mapping[str, Any] = field(default_factory=dict)
    pvc_retention: str = "Retain"

    @property
    def family(self) -> str:
        """`redis` or `valkey`: which server the image runs."""
        return "valkey" if "valkey/valkey:" in self.image else "redis"

    @property
    def secret_name(self) -> str:
        return self.auth_secret or f"{self.name}-auth"


def _int(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"spec.{key} must be an integer (got {value!r})")
    return value


def parse(obj: Mapping[str, Any]) -> RedisCluster:
    """Read a RedisCluster object; SpecError with one clear message when it can't be built."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    name = str(meta.get("name", ""))
    cluster = ClusterSpec(
        name=name,
        shards=_int(spec, "shards", 3),
        replicas=_int(spec, "replicasPerShard", 1),
        node_timeout_ms=_int(spec, "nodeTimeoutMs", 5000),
    )
    if cluster.replicas > MAX_REPLICAS:
        raise SpecError(
            f"spec.replicasPerShard must be at most {MAX_REPLICAS} (got {cluster.replicas})"
        )
    if cluster.shards > MAX_SHARDS:
        raise SpecError(f"spec.shards must be at most {MAX_SHARDS} (got {cluster.shards})")
    if cluster.node_timeout_ms > MAX_NODE_TIMEOUT_MS:
        raise SpecError(
            f"spec.nodeTimeoutMs must be at most {MAX_NODE_TIMEOUT_MS} "
            f"(got {cluster.node_timeout_ms})"
        )
    image = str(spec.get("image", DEFAULT_IMAGE))
    if not IMAGE.match(image):
        raise SpecError(
            f"spec.image {image!r} must be Redis 7.x (redis:7...) or Valkey 8/9 "
            "(valkey/valkey:8... or :9...)"
        )
    config = {str(k): str(v) for k, v in (spec.get("config") or {}).items()}
    forbidden = sorted(k for k in config if k.lower() in FORBIDDEN_CONFIG_KEYS)
    multiline = sorted(k for k, v in config.items() if "\n" in v or "\r" in v)
    if multiline:
        raise SpecError(f"spec.config values must be a single line: {', '.join(multiline)}")
    if forbidden:
        raise SpecError(
            f"spec.config must not set keys the operator manages: {', '.join(forbidden)}"
        )
    storage = None
    if spec.get("storage") is not None:
        raw = spec["storage"]
        storage = Storage(str(raw.get("size", "1Gi")), raw.get("storageClassName"))
    placement_raw = spec.get("placement") or {}
    anti = placement_raw.get("antiAffinity", "preferred")
    if anti not in ("required", "preferred"):
        raise SpecError(f"spec.placement.antiAffinity must be required or preferred (got {anti!r})")
    retention = spec.get("pvcRetention", "Retain")
    if retention not in ("Retain", "Delete"):
        raise SpecError(f"spec.pvcRetention must be Retain or Delete (got {retention!r})")
    return RedisCluster(
        name=name,
        namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid", "")),
        cluster=cluster,
        image=image,
        storage=storage,
        aof=bool((spec.get("persistence") or {}).get("aof", True)),
        auth_secret=(spec.get("auth") or {}).get("secretName"),
        config=config,
        placement=Placement(
            topology_key=str(placement_raw.get("topologyKey", "kubernetes.io/hostname")),
            required=anti == "required",
            zone_spread=bool(placement_raw.get("zoneSpread", True)),
        ),
        resources=dict(spec.get("resources") or {}),
        pvc_retention=retention,
    )
