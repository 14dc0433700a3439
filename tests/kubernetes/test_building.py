"""The objects a RedisCluster becomes: pure builders, checked object by object."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from redkube.kubernetes.building import build_all, redis_conf
from redkube.kubernetes.clusters import parse
from redkube.model.specs import SpecError

JSON = dict[str, Any]


def cluster_object(**spec: Any) -> JSON:
    return {
        "apiVersion": "redkube.io/v1alpha1",
        "kind": "RedisCluster",
        "metadata": {"name": "cache", "namespace": "shop", "uid": "1234-abcd"},
        "spec": spec,
    }


def by_kind(objects: list[JSON]) -> dict[str, list[JSON]]:
    kinds: dict[str, list[JSON]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def test_three_shards_with_storage_become_the_textbook_objects() -> None:
    cluster = parse(cluster_object(shards=3, replicasPerShard=1, storage={"size": "2Gi"}))
    kinds = by_kind(build_all(cluster, "pw"))
    assert sorted(kinds) == [
        "ConfigMap", "PodDisruptionBudget", "Secret", "Service", "StatefulSet",
    ]  # fmt: skip
    assert [s["metadata"]["name"] for s in kinds["StatefulSet"]] == [
        "cache-0",
        "cache-1",
        "cache-2",
    ]
    assert {s["metadata"]["name"] for s in kinds["Service"]} == {"cache", "cache-nodes"}
    assert [p["metadata"]["name"] for p in kinds["PodDisruptionBudget"]] == [
        "cache-0", "cache-1", "cache-2",
    ]  # fmt: skip
    for obj in build_all(cluster, "pw"):
        assert obj["metadata"]["namespace"] == "shop"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "redkube.io/v1alpha1", "kind": "RedisCluster", "name": "cache",
            "uid": "1234-abcd", "controller": True, "blockOwnerDeletion": True,
        }  # fmt: skip

    shard = kinds["StatefulSet"][1]["spec"]
    assert shard["replicas"] == 2
    assert shard["updateStrategy"] == {"type": "OnDelete"}
    assert shard["serviceName"] == "cache-nodes"
    assert shard["selector"]["matchLabels"] == {
        "redkube.io/cluster": "cache",
        "redkube.io/shard": "1",
    }
    (claim,) = shard["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert shard["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    pod = shard["template"]["spec"]
    assert shard["template"]["metadata"]["labels"]["redkube.io/shard"] == "1"
    assert not [v for v in pod["volumes"] if v["name"] == "data"]  # the claim provides it
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]["redkube.io/shard"] == "1"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "valkey/valkey:9.1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["lifecycle"]["preStop"]["exec"]["command"][-1].endswith("prestop.sh")
    assert "readinessProbe" in container and "livenessProbe" in container
    headless = next(s for s in kinds["Service"] if s["metadata"]["name"] == "cache-nodes")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    (secret,) = kinds["Secret"]
    assert base64.b64decode(secret["data"]["password"]) == b"pw"
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "cache-auth"


def test_cache_mode_required_anti_affinity_user_secret_and_delete_retention() -> None:
    cluster = parse(
        cluster_object(
            shards=1, replicasPerShard=2, image="redis:7.2",
            placement={"antiAffinity": "required", "topologyKey": "topology.kubernetes.io/zone",
                       "zoneSpread": False},
            auth={"secretName": "mine"}, pvcRetention="Delete",
        )
    )  # fmt: skip
    kinds = by_kind(build_all(cluster, "unused"))
    assert "Secret" not in kinds  # the user's own Secret is used
    (shard,) = kinds["StatefulSet"]
    spec = shard["spec"]
    assert spec["replicas"] == 3
    assert "volumeClaimTemplates" not in spec
    pod = spec["template"]["spec"]
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert "topologySpreadConstraints" not in pod
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mine"
    assert env["REDKUBE_SERVER"]["value"] == "redis-server"


def test_redis_conf_has_cluster_settings_and_the_users_extras() -> None:
    cluster = parse(
        cluster_object(nodeTimeoutMs=3000, persistence={"aof": False},
                       config={"maxmemory-policy": "allkeys-lru"})
    )  # fmt: skip
    conf = redis_conf(cluster).splitlines()
    assert "cluster-enabled yes" in conf
    assert "cluster-node-timeout 3000" in conf
    assert "appendonly no" in conf
    assert "maxmemory-policy allkeys-lru" in conf
    assert "dir /data" in conf
    assert not [line for line in conf if line.startswith("requirepass")]  # never in a ConfigMap


def test_render_without_uid_sets_no_owner() -> None:
    obj = cluster_object()
    del obj["metadata"]["uid"]
    assert all("ownerReferences" not in o["metadata"] for o in build_all(parse(obj), "pw"))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"shards": 0}, "shards must be at least 1"),
        ({"shards": "three"}, "spec.shards must be an integer"),
        ({"replicasPerShard": -1}, "replicas must be 0 or more"),
        ({"replicasPerShard": 9}, "at most 5"),
        ({"image": "nginx:1.27"}, "must be Redis 7.x"),
        ({"image": "redis:6.2"}, "must be Redis 7.x"),
        ({"image": "valkey/valkey:7.2"}, "must be Redis 7.x"),
        ({"config": {"PORT": "7000"}}, "keys the operator manages: PORT"),
        ({"nodeTimeoutMs": 10}, "node timeout must be at least"),
        ({"placement": {"antiAffinity": "sometimes"}}, "required or preferred"),
        ({"pvcRetention": "Keep"}, "Retain or Delete"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_bad_specs_get_one_clear_message(spec: JSON, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment.replace(".", r"\.")):
        parse(cluster_object(**spec))
