"""A RedisCluster object read into typed values, with the CRD's defaults and checks.

The apiserver applies the same defaults and refuses the same mistakes (see `resources.py`);
this copy serves `redkube render`, which has no apiserver, and the operator, which must never
crash on an object that slipped past admission.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from redkube.kubernetes.resources import (
    CONFIG_FORMATS,
    DEFAULT_EXPORTER_IMAGE,
    DEFAULT_IMAGE,
    FORBIDDEN_CONFIG_KEYS,
    GROUP,
    IMAGE_PATTERN,
    MAX_NODE_TIMEOUT_MS,
    MAX_REPLICAS,
    MAX_SHARDS,
    PLURAL,
    VERSION,
    config_value_message,
)
from redkube.model.specs import ClusterSpec, SpecError

IMAGE = re.compile(IMAGE_PATTERN)

# A Kubernetes resource quantity: a decimal number, then a binary (Ki..Ei) or decimal (n..E)
# suffix or a decimal exponent (1e3); as k8s.io/apimachinery's resource.ParseQuantity reads it.
QUANTITY = re.compile(
    r"(?P<number>[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: str | int) -> Fraction:
    """A Kubernetes quantity as an exact number: `1.5Gi` -> 1610612736, `500m` -> 1/2, `1e3`
    -> 1000, `128974848` -> 128974848; ValueError when it is not a quantity."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    found = QUANTITY.fullmatch(value)
    if found is None:
        raise ValueError(f"not a quantity: {value!r}")
    number = Fraction(found["number"])
    suffix = found["suffix"] or ""
    if suffix in BINARY_SUFFIXES:
        return number * Fraction(1024) ** BINARY_SUFFIXES[suffix]
    if suffix in DECIMAL_SUFFIXES:
        return number * Fraction(10) ** DECIMAL_SUFFIXES[suffix]
    if suffix:
        return number * Fraction(10) ** int(suffix[1:])
    return number


def memory_bytes(value: str | int) -> int:
    """A memory quantity in whole bytes, rounded up as Kubernetes does (`1.5Gi` -> 1610612736)."""
    return math.ceil(parse_quantity(value))


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


PEER_KEYS = frozenset({"podSelector", "namespaceSelector", "ipBlock"})


@dataclass(frozen=True)
class NetworkAccess:
    """spec.networkPolicy: whether a NetworkPolicy guards the Pods, and who besides the cluster's
    own Pods and the operator's namespace may reach the client port (NetworkPolicyPeer objects;
    by default every Pod of the cluster's namespace)."""

    enabled: bool = True
    clients: tuple[Mapping[str, Any], ...] = ({"podSelector": {}},)


EXPORTER_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"memory": "128Mi"},
}


@dataclass(frozen=True)
class Metrics:
    """spec.metrics: the redis_exporter sidecar of every Redis Pod."""

    enabled: bool = True
    image: str = DEFAULT_EXPORTER_IMAGE
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(EXPORTER_RESOURCES))


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
    allow_disruption_without_replicas: bool = False
    network: NetworkAccess = NetworkAccess()
    metrics: Metrics = Metrics()

    @property
    def family(self) -> str:
        """`redis` or `valkey`: which server the image runs."""
        return "valkey" if "valkey/valkey:" in self.image else "redis"

    @property
    def secret_name(self) -> str:
        return self.auth_secret or f"{self.name}-auth"

    @property
    def memory_limit(self) -> int | None:
        """spec.resources.limits.memory in bytes; None when not set."""
        limit = (self.resources.get("limits") or {}).get("memory")
        return None if limit is None else memory_bytes(limit)


def _int(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"spec.{key} must be an integer (got {value!r})")
    return value


def _bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"spec.{key} must be true or false (got {value!r})")
    return value


def _paused(strategy: Mapping[str, Any]) -> bool:
    value = strategy.get("paused", False)
    if not isinstance(value, bool):
        raise SpecError(f"spec.updateStrategy.paused must be true or false (got {value!r})")
    return value


def _config(raw: Any) -> dict[str, str]:
    """spec.config as redis.conf text: integers become strings (`hz: 10`); the values of the keys
    in CONFIG_FORMATS must have their format (the CRD's CEL rules check the same)."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec.config must be an object")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SpecError(
                f"spec.config {key} must be a string or an integer (got {value!r}); quote yes,"
                " no, true, false and numbers with a fraction"
            )
    config = {str(key): str(value) for key, value in raw.items()}
    multiline = sorted(k for k, v in config.items() if "\n" in v or "\r" in v)
    if multiline:
        raise SpecError(f"spec.config values must be a single line: {', '.join(multiline)}")
    for key, value in raw.items():
        value_format = CONFIG_FORMATS.get(str(key).lower())
        if value_format is not None and not value_format.accepts(value):
            message = config_value_message(str(key), str(value), value_format.expected)
            raise SpecError(f"spec.{message}")
    return config


def _network(raw: Any) -> NetworkAccess:
    if not isinstance(raw, Mapping):
        raise SpecError("spec.networkPolicy must be an object")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError(f"spec.networkPolicy.enabled must be true or false (got {enabled!r})")
    clients = raw.get("clients", list(NetworkAccess.clients))
    if not isinstance(clients, list) or not all(isinstance(c, Mapping) for c in clients):
        raise SpecError("spec.networkPolicy.clients must be a list of NetworkPolicy peers")
    for peer in clients:
        unknown = sorted(set(peer) - PEER_KEYS)
        if not peer or unknown:
            raise SpecError(
                "spec.networkPolicy.clients: each peer has podSelector, namespaceSelector or "
                f"ipBlock (got {', '.join(unknown) or 'an empty peer'})"
            )
    return NetworkAccess(enabled, tuple(dict(c) for c in clients))


def _resources(raw: Any, where: str = "spec.resources") -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object")
    limit = (raw.get("limits") or {}).get("memory")
    if limit is not None:
        try:
            valid = memory_bytes(limit) >= 0
        except ValueError:
            valid = False
        if not valid:
            raise SpecError(
                f"{where}.limits.memory must be a quantity such as 512Mi or 1.5Gi (got {limit!r})"
            )
    return dict(raw)


def _metrics(raw: Any) -> Metrics:
    if not isinstance(raw, Mapping):
        raise SpecError("spec.metrics must be an object")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError(f"spec.metrics.enabled must be true or false (got {enabled!r})")
    image = raw.get("image", DEFAULT_EXPORTER_IMAGE)
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise SpecError(f"spec.metrics.image must be an image name (got {image!r})")
    resources = raw.get("resources")
    if resources is None:
        return Metrics(enabled, image)
    return Metrics(enabled, image, _resources(resources, "spec.metrics.resources"))


def parse(obj: Mapping[str, Any]) -> RedisCluster:
    """Read a RedisCluster object; SpecError with one clear message when it can't be built."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    name = str(meta.get("name", ""))
    config = _config(spec.get("config") or {})
    strategy = spec.get("updateStrategy") or {}
    if not isinstance(strategy, Mapping):
        raise SpecError("spec.updateStrategy must be an object")
    cluster = ClusterSpec(
        name=name,
        shards=_int(spec, "shards", 3),
        replicas=_int(spec, "replicasPerShard", 1),
        node_timeout_ms=_int(spec, "nodeTimeoutMs", 5000),
        config=tuple(config.items()),
        persistent=spec.get("storage") is not None,
        paused=_paused(strategy),
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
    forbidden = sorted(k for k in config if k.lower() in FORBIDDEN_CONFIG_KEYS)
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
        resources=_resources(spec.get("resources") or {}),
        pvc_retention=retention,
        allow_disruption_without_replicas=_bool(spec, "allowDisruptionWithoutReplicas", False),
        network=_network(spec.get("networkPolicy") or {}),
        metrics=_metrics(spec.get("metrics") or {}),
    )
