"""The RedisCluster CRD on a real apiserver: it fills in the defaults and refuses bad objects.

Every refusal here comes from the apiserver itself (OpenAPI schema and CEL rules), before any
operator runs; each case asserts the fragment of the message a user would read.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from redkube.kubernetes import backup_resources, resources
from redkube.kubernetes.clusters import parse
from redkube.model import specs
from redkube.model.specs import SpecError
from testbed import ControlPlane

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "deploy" / "crd.yaml"
NAMESPACE = "t-crd"

DEFAULT_SPEC: JSON = {
    "shards": 3,
    "replicasPerShard": 1,
    "image": "valkey/valkey:9.1",
    "nodeTimeoutMs": 5000,
    "persistence": {"aof": True},
    "auth": {},
    "placement": {
        "topologyKey": "kubernetes.io/hostname",
        "antiAffinity": "preferred",
        "zoneSpread": True,
    },
    "pvcRetention": "Retain",
    "allowDisruptionWithoutReplicas": False,
    "updateStrategy": {"paused": False},
    "networkPolicy": {"enabled": True, "clients": [{"podSelector": {}}]},
    "metrics": {"enabled": True, "image": "oliver006/redis_exporter:v1.74.0"},
}


def manifest(name: str, spec: JSON | None = None) -> str:
    obj: JSON = {"apiVersion": "redkube.io/v1alpha1", "kind": "RedisCluster"}
    obj["metadata"] = {"name": name}
    if spec is not None:
        obj["spec"] = spec
    return json.dumps(obj)


def apply(
    cp: ControlPlane, name: str, spec: JSON | None = None, *flags: str
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` one RedisCluster; the caller checks the exit status."""
    return cp.kubectl(
        "apply", "-n", NAMESPACE, *flags, "-f", "-", input=manifest(name, spec), check=False
    )


def read(cp: ControlPlane, name: str) -> JSON:
    reply: JSON = json.loads(cp.kubectl("get", "-n", NAMESPACE, "rdc", name, "-o", "json").stdout)
    return reply


def exists(cp: ControlPlane, name: str) -> bool:
    found = cp.kubectl("get", "-n", NAMESPACE, "rdc", name, "--ignore-not-found", "-o", "name")
    return bool(found.stdout.strip())


def refused(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode != 0, f"accepted, should be refused: {done.stdout}"
    assert fragment in done.stderr, f"{fragment!r} not in:\n{done.stderr}"


@pytest.fixture(scope="module")
def cp(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane with the CRD established and the namespace `t-crd` created."""
    control_plane.kubectl("apply", "-f", str(CRD_FILE))
    control_plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{resources.NAME}", "--timeout=60s", timeout=90
    )
    control_plane.kubectl("create", "namespace", NAMESPACE)
    yield control_plane
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


# -- the definition itself (no apiserver) --------------------------------------------------------


def test_deploy_crd_yaml_is_the_generated_one() -> None:
    assert CRD_FILE.read_text() == resources.crd_yaml(), (
        "deploy/crd.yaml is stale: python -m redkube.kubernetes.resources > deploy/crd.yaml"
    )
    assert yaml.safe_load(CRD_FILE.read_text()) == resources.custom_resource_definition()


def test_deploy_backup_crd_yaml_is_the_generated_one() -> None:
    path = ROOT / "deploy" / "backup-crd.yaml"
    assert path.read_text() == backup_resources.crd_yaml(), (
        "deploy/backup-crd.yaml is stale: "
        "python -m redkube.kubernetes.backup_resources > deploy/backup-crd.yaml"
    )
    assert yaml.safe_load(path.read_text()) == backup_resources.custom_resource_definition()


def test_module_prints_the_yaml() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redkube.kubernetes.resources"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == resources.crd_yaml()


def test_limits_agree_with_the_python_checks() -> None:
    assert resources.MIN_NODE_TIMEOUT_MS == specs.MIN_NODE_TIMEOUT_MS
    assert specs.NAME_PATTERN.pattern == resources.NAME_PATTERN
    assert len(set(resources.FORBIDDEN_CONFIG_KEYS)) == len(resources.FORBIDDEN_CONFIG_KEYS)
    assert not set(resources.CONFIG_FORMATS) & set(resources.FORBIDDEN_CONFIG_KEYS)
    assert all(key == key.lower() for key in resources.CONFIG_FORMATS)
    names = resources.custom_resource_definition()["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "RedisCluster",
        "redisclusters",
        ["rdc"],
    )


# The image rule's regex is RE2 in the apiserver; for this pattern Python's `re` agrees.
@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("redis:7", True),
        ("redis:7.2.4", True),
        ("redis:7-alpine", True),
        ("redis:7.4-bookworm", True),
        ("docker.io/library/redis:7.2", True),
        ("registry.example.com:5000/redis:7", True),
        ("localhost:5000/valkey/valkey:9", True),
        ("valkey/valkey:8", True),
        ("valkey/valkey:8.0-alpine", True),
        ("valkey/valkey:9.1.2", True),
        ("ghcr.io/valkey/valkey:9", True),
        ("redis", False),
        ("redis:6.2", False),
        ("redis:70", False),
        ("redis:latest", False),
        ("redis@sha256:0123abcd", False),
        ("bitnami/redis:7.2", False),
        ("valkey/valkey", False),
        ("valkey/valkey:7.2", False),
        ("valkey/valkey:10", False),
        ("nginx:1.27", False),
    ],
)
def test_image_pattern(image: str, ok: bool) -> None:
    assert bool(re.match(resources.IMAGE_PATTERN, image)) is ok


# -- on the apiserver ----------------------------------------------------------------------------


def test_minimal_object_reads_back_with_every_default(cp: ControlPlane) -> None:
    done = apply(cp, "minimal")
    assert done.returncode == 0, done.stderr
    assert read(cp, "minimal")["spec"] == DEFAULT_SPEC

    done = apply(cp, "with-storage", {"storage": {}, "placement": {"zoneSpread": False}})
    assert done.returncode == 0, done.stderr
    spec = read(cp, "with-storage")["spec"]
    assert spec["storage"] == {"size": "1Gi"}
    assert spec["placement"] == {**DEFAULT_SPEC["placement"], "zoneSpread": False}


def test_printer_columns_short_name_and_category(cp: ControlPlane) -> None:
    done = apply(cp, "shown", {"shards": 4, "replicasPerShard": 2})
    assert done.returncode == 0, done.stderr
    cp.kubectl(
        "patch", "-n", NAMESPACE, "rediscluster", "shown", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"readyNodes": "12/12", "phase": "Ready"}}),
    )  # fmt: skip
    for kind in ("rdc", "redisclusters", "rediscluster"):
        table = cp.kubectl("get", "-n", NAMESPACE, kind, "shown").stdout.splitlines()
        assert table[0].split() == ["NAME", "SHARDS", "REPLICAS", "READY", "PHASE", "AGE"], kind
        assert table[1].split()[:5] == ["shown", "4", "2", "12/12", "Ready"], kind
    # the category: every redkube kind (clusters and their backups)
    listed = cp.kubectl("get", "-n", NAMESPACE, "redkube", "-o", "name").stdout.split()
    assert "rediscluster.redkube.io/shown" in listed, listed


def test_status_is_a_subresource(cp: ControlPlane) -> None:
    """A status sent with the object is dropped; the operator writes it through /status."""
    done = apply(cp, "no-status")
    assert done.returncode == 0, done.stderr
    cp.kubectl(
        "patch", "-n", NAMESPACE, "rdc", "no-status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Ready"}}),
    )  # fmt: skip
    assert "status" not in read(cp, "no-status")
    done = cp.kubectl(
        "patch", "-n", NAMESPACE, "rdc", "no-status", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"readyNodes": 6}}), check=False,
    )  # fmt: skip
    refused(done, "status.readyNodes: Invalid value")

    status: JSON = {
        "phase": "Ready",
        "readyNodes": "6/6",
        "observedGeneration": 1,
        "message": "",
        "problems": ["x-0-1 CrashLoopBackOff (last exit code 1)", "x-0-2 Unschedulable"],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "ClusterOk",
                "message": "",
                "lastTransitionTime": "2026-11-24T12:00:00Z",
            }
        ],
        "shards": [{"index": 0, "master": "x-0-0", "replicas": ["x-0-1"], "slots": "0-5460"}],
    }
    cp.kubectl(
        "patch", "-n", NAMESPACE, "rdc", "no-status", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    assert read(cp, "no-status")["status"] == status


BAD = [
    ("shards-0", {"shards": 0}, "spec.shards in body should be greater than or equal to 1"),
    ("shards-negative", {"shards": -1}, "spec.shards in body should be greater than or equal to 1"),
    ("shards-101", {"shards": 101}, "spec.shards in body should be less than or equal to 100"),
    ("shards-string", {"shards": "three"}, "spec.shards in body must be of type integer"),
    (
        "replicas-negative",
        {"replicasPerShard": -1},
        "spec.replicasPerShard in body should be greater than or equal to 0",
    ),
    (
        "replicas-9",
        {"replicasPerShard": 9},
        "spec.replicasPerShard in body should be less than or equal to 5",
    ),
    ("image-nginx", {"image": "nginx:1.27"}, resources.IMAGE_MESSAGE),
    ("image-redis-6", {"image": "redis:6.2"}, resources.IMAGE_MESSAGE),
    ("image-valkey-7", {"image": "valkey/valkey:7.2"}, resources.IMAGE_MESSAGE),
    ("image-digest", {"image": "redis@sha256:0123abcd"}, resources.IMAGE_MESSAGE),
    ("config-port", {"config": {"port": "7000"}}, "config must not set port: the operator"),
    ("config-requirepass-upper", {"config": {"REQUIREPASS": "x"}}, "must not set REQUIREPASS"),
    (
        "config-rename-command",
        {"config": {"rename-command": "FLUSHALL ''"}},
        "config must not set rename-command",
    ),
    (
        "config-node-timeout",
        {"config": {"maxmemory": "1gb", "cluster-node-timeout": "100"}},
        "config must not set cluster-node-timeout: the operator manages it, or it is unsafe"
        " (for cluster-node-timeout use spec.nodeTimeoutMs",
    ),
    (
        "config-value-newline",
        {"config": {"maxmemory": "1gb\nrequirepass x"}},
        'spec.config[maxmemory]: Invalid value: "1gb\\nrequirepass x": config values must be'
        " a single line",
    ),
    ("config-key-space", {"config": {"maxmemory 1gb": "x"}}, "config keys must be redis.conf"),
    (
        "config-too-many",
        {"config": {f"key-{i}": "x" for i in range(65)}},
        "spec.config: Too many: 65: must have at most 64 items",
    ),
    (
        "node-timeout-10",
        {"nodeTimeoutMs": 10},
        "spec.nodeTimeoutMs in body should be greater than or equal to 100",
    ),
    (
        "anti-affinity-sometimes",
        {"placement": {"antiAffinity": "sometimes"}},
        'spec.placement.antiAffinity: Unsupported value: "sometimes": supported values:'
        ' "required", "preferred"',
    ),
    (
        "pvc-retention-keep",
        {"pvcRetention": "Keep"},
        'spec.pvcRetention: Unsupported value: "Keep": supported values: "Retain", "Delete"',
    ),
    (
        "config-maxmemory-lots",
        {"config": {"maxmemory": "lots"}},
        "spec.config: Invalid value: config maxmemory must be a memory size such as"
        ' 100mb, 1gb or 12345 (digits and an optional unit b, k, kb, m, mb, g or gb); got "lots"',
    ),
    (
        "config-hz-words",
        {"config": {"HZ": "ten"}},
        'config HZ must be a whole number, 0 or more, such as 10; got "ten"',
    ),
    (
        "config-maxclients-0",
        {"config": {"maxclients": 0}},
        'config maxclients must be a whole number, 1 or more, such as 16; got "0"',
    ),
    (
        "config-yes-no-as-number",
        {"config": {"lazyfree-lazy-eviction": 1}},
        "config lazyfree-lazy-eviction must be yes or no (quoted: YAML reads a bare yes or no as"
        ' a boolean); got "1"',
    ),
    (
        "config-policy",
        {"config": {"maxmemory-policy": "lru"}},
        "config maxmemory-policy must be one of volatile-lru, volatile-lfu, volatile-random,"
        ' volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction; got "lru"',
    ),
    (
        "config-boolean",
        {"config": {"appendfsync": True}},
        "spec.config.appendfsync in body must be of type integer,string",
    ),
    (
        "allow-disruption-string",
        {"allowDisruptionWithoutReplicas": "yes"},
        "spec.allowDisruptionWithoutReplicas in body must be of type boolean",
    ),
    (
        "memory-quantity",
        {"resources": {"limits": {"memory": "lots"}}},
        "spec.resources.limits.memory in body should match",
    ),
    (
        "network-peer-unknown",
        {"networkPolicy": {"clients": [{"pods": {"matchLabels": {"app": "shop"}}}]}},
        'unknown field "spec.networkPolicy.clients[0].pods"',
    ),
    (
        "network-peer-empty",
        {"networkPolicy": {"clients": [{}]}},
        "a peer has podSelector, namespaceSelector or ipBlock",
    ),
    (
        "storage-class-upper",
        {"storage": {"storageClassName": "Fast"}},
        "spec.storage.storageClassName in body should match",
    ),
]


@pytest.mark.parametrize(("name", "spec", "fragment"), BAD, ids=[case[0] for case in BAD])
def test_bad_object_is_refused(cp: ControlPlane, name: str, spec: JSON, fragment: str) -> None:
    refused(apply(cp, f"bad-{name}", spec), fragment)
    assert not exists(cp, f"bad-{name}")


def test_unknown_field_is_refused_by_strict_validation(cp: ControlPlane) -> None:
    done = apply(cp, "bad-unknown", {"shardz": 3}, "--validate=strict")
    refused(done, 'strict decoding error: unknown field "spec.shardz"')
    assert not exists(cp, "bad-unknown")


@pytest.mark.parametrize(
    "name",
    ["3abc", "Upper", "a-name-of-forty-one-characters-is-too-long"],
    ids=["digit-first", "uppercase", "41-characters"],
)
def test_bad_name_is_refused(cp: ControlPlane, name: str) -> None:
    refused(apply(cp, name), "metadata.name must be 1-40 lowercase letters, digits or '-'")


def test_images_the_rule_accepts(cp: ControlPlane) -> None:
    for i, image in enumerate(
        ["redis:7.2.4-alpine", "docker.io/library/redis:7", "valkey/valkey:8"]
    ):
        done = apply(cp, f"image-{i}", {"image": image})
        assert done.returncode == 0, done.stderr
        assert read(cp, f"image-{i}")["spec"]["image"] == image


# -- transition rules ----------------------------------------------------------------------------


def test_storage_class_is_immutable(cp: ControlPlane) -> None:
    storage = {"storageClassName": "standard", "size": "1Gi"}
    assert apply(cp, "classy", {"storage": storage}).returncode == 0
    message = "spec.storage.storageClassName: Invalid value: storageClassName cannot be changed;"
    refused(apply(cp, "classy", {"storage": {**storage, "storageClassName": "fast"}}), message)
    refused(apply(cp, "classy", {"storage": {"size": "1Gi"}}), message)
    assert read(cp, "classy")["spec"]["storage"]["storageClassName"] == "standard"
    # The size is not guarded here.
    assert apply(cp, "classy", {"storage": {**storage, "size": "2Gi"}}).returncode == 0


def test_storage_cannot_be_added_or_removed(cp: ControlPlane) -> None:
    message = "spec.storage: Invalid value: storage cannot be added or removed after creation"
    assert apply(cp, "cache", {}).returncode == 0
    refused(apply(cp, "cache", {"storage": {"size": "1Gi"}}), message)
    assert "storage" not in read(cp, "cache")["spec"]

    assert apply(cp, "durable", {"storage": {}}).returncode == 0
    refused(apply(cp, "durable", {}), message)
    assert read(cp, "durable")["spec"]["storage"] == {"size": "1Gi"}


def test_shards_change_within_bounds(cp: ControlPlane) -> None:
    """Slots move between shards (resharding), so shards may change; the bounds still hold."""
    assert apply(cp, "fixed", {"shards": 3}).returncode == 0
    for shards in (5, 2, 3):
        done = apply(cp, "fixed", {"shards": shards})
        assert done.returncode == 0, done.stderr
        assert read(cp, "fixed")["spec"]["shards"] == shards
    refused(apply(cp, "fixed", {"shards": 0}), "spec.shards")
    refused(apply(cp, "fixed", {"shards": 101}), "spec.shards")


def test_cache_mode_keeps_a_replica(cp: ControlPlane) -> None:
    """Without storage a replica is the only other copy of a shard's keys: scaling replicas down
    to 0 is refused; with storage, or from 0, it is allowed."""
    assert apply(cp, "cached", {"replicasPerShard": 2}).returncode == 0
    assert apply(cp, "cached", {"replicasPerShard": 1}).returncode == 0
    refused(
        apply(cp, "cached", {"replicasPerShard": 0}),
        "spec.replicasPerShard: Invalid value: in cache mode (no storage) the replicas hold the"
        " only other copy of the data: replicasPerShard cannot drop to 0 (was 1)",
    )
    assert read(cp, "cached")["spec"]["replicasPerShard"] == 1
    assert apply(cp, "stored", {"storage": {}, "replicasPerShard": 1}).returncode == 0
    assert apply(cp, "stored", {"storage": {}, "replicasPerShard": 0}).returncode == 0
    assert apply(cp, "bare", {"replicasPerShard": 0}).returncode == 0
    assert (
        apply(cp, "bare", {"replicasPerShard": 0, "config": {"maxmemory": "1mb"}}).returncode == 0
    )


# -- config values: admission and the parser agree -----------------------------------------------

CONFIG_CASES: list[JSON] = [
    {"hz": 10},
    {"hz": "10"},
    {"hz": "010"},
    {"hz": -1},
    {"hz": "ten"},
    {"maxmemory": "100mb"},
    {"maxmemory": "1GB"},
    {"maxmemory": 12345},
    {"maxmemory": "1.5gb"},
    {"maxmemory": "50%"},
    {"MAXMEMORY": "lots"},
    {"maxclients": "0"},
    {"databases": 16},
    {"slowlog-log-slower-than": -1},
    {"slowlog-log-slower-than": "+1"},
    {"replica-read-only": "No"},
    {"replica-read-only": "true"},
    {"maxmemory-policy": "ALLKEYS-LRU"},
    {"maxmemory-policy": "lru"},
    {"appendfsync": "always"},
    {"appendfsync": 1},
    {"loglevel": "nothing"},
    {"list-max-listpack-size": -2},  # not a key redkube checks
    {"notify-keyspace-events": "KEA"},
]


def parser_accepts(config: JSON) -> bool:
    try:
        parse({"metadata": {"name": "agree"}, "spec": {"config": config}})
    except SpecError:
        return False
    return True


def test_admission_and_the_parser_agree_on_config_values(cp: ControlPlane) -> None:
    disagree = []
    for config in CONFIG_CASES:
        done = apply(cp, "agree", {"config": config}, "--dry-run=server")
        if (done.returncode == 0) != parser_accepts(config):
            disagree.append((config, done.returncode, done.stderr.strip()))
    assert not disagree


def test_integer_config_values_read_back_as_integers(cp: ControlPlane) -> None:
    config = {"hz": 10, "maxmemory": "100mb", "maxmemory-policy": "allkeys-lru"}
    done = apply(cp, "numbers", {"config": config})
    assert done.returncode == 0, done.stderr
    assert read(cp, "numbers")["spec"]["config"] == config
    assert parse(read(cp, "numbers")).config["hz"] == "10"
