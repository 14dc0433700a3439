"""The objects a RedisCluster becomes: pure builders, checked object by object."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from redkube.kubernetes import building
from redkube.kubernetes.building import build_all, build_config_map, build_statefulset, redis_conf
from redkube.kubernetes.clusters import RedisCluster, parse
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
        "ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service", "StatefulSet",
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
    container, _ = pod["containers"]  # the server, then the metrics sidecar
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


# -- Pod basics: grace period, hooks and probes, memory, disruption budgets ----------------------


def pod_spec(cluster: RedisCluster, shard: int = 0) -> JSON:
    spec: JSON = build_statefulset(cluster, shard)["spec"]["template"]["spec"]
    return spec


def test_grace_period_covers_the_prestop_hand_over_and_a_clean_shutdown() -> None:
    spec = pod_spec(parse(cluster_object()))
    assert spec["terminationGracePeriodSeconds"] == building.GRACE_SECONDS
    assert building.GRACE_SECONDS >= building.PRESTOP_MAX_S + building.SHUTDOWN_S
    # The hook's worst case: three cut-off calls, the hand-over wait and one more poll.
    assert building.PRESTOP_MAX_S > 4 * building.CLI_TIMEOUT_S + building.HANDOVER_WAIT_S


def test_grace_period_follows_a_longer_shutdown_timeout_the_user_sets() -> None:
    """The server waits `shutdown-timeout` for its replicas on SIGTERM; Kubernetes must not
    SIGKILL it before that wait and its writes are over."""
    spec = pod_spec(parse(cluster_object(config={"shutdown-timeout": 45})))
    grace = spec["terminationGracePeriodSeconds"]
    assert grace == building.PRESTOP_MAX_S + 45 + building.SHUTDOWN_WRITE_S
    assert grace > building.GRACE_SECONDS


@pytest.mark.parametrize("script", ["prestop.sh", "ready.sh"])
def test_every_redis_cli_call_in_the_hooks_and_probes_has_a_timeout(script: str) -> None:
    text = build_config_map(parse(cluster_object()))["data"][script]
    code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    calls = re.findall(r"(\S+ \S+ )?redis-cli", code)
    assert calls, text
    assert all(re.fullmatch(r"timeout \d+ ", prefix) for prefix in calls), text


def test_the_container_quotes_its_logs_when_it_fails_and_probes_membership() -> None:
    container = pod_spec(parse(cluster_object()))["containers"][0]
    assert container["name"] == "server"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    probe = container["readinessProbe"]
    assert probe["exec"]["command"] == ["sh", "/etc/redkube/ready.sh"]
    # Both bounded redis-cli calls fit in the probe's own timeout.
    assert probe["timeoutSeconds"] > 2 * building.PROBE_CLI_TIMEOUT_S
    assert container["livenessProbe"]["tcpSocket"] == {"port": "redis"}


@pytest.mark.parametrize(
    ("limit", "maxmemory"),
    [
        ("1Gi", 805306368),  # 3/4 of 1073741824
        ("1.5Gi", 1207959552),
        ("512Mi", 402653184),
        ("1G", 750000000),
        (268435456, 201326592),
    ],
)
def test_maxmemory_follows_the_memory_limit(limit: str | int, maxmemory: int) -> None:
    cluster = parse(cluster_object(resources={"limits": {"memory": limit}}))
    assert f"maxmemory {maxmemory}" in redis_conf(cluster).splitlines()
    assert building.maxmemory_for(1000) == 750


@pytest.mark.parametrize("key", ["maxmemory", "MAXMEMORY"])
def test_the_users_maxmemory_wins(key: str) -> None:
    cluster = parse(cluster_object(resources={"limits": {"memory": "1Gi"}}, config={key: "100mb"}))
    lines = [line for line in redis_conf(cluster).splitlines() if "maxmemory" in line.lower()]
    assert lines == [f"{key} 100mb"]


def test_no_memory_limit_no_maxmemory() -> None:
    requests_only = parse(cluster_object(resources={"requests": {"memory": "1Gi"}}))
    assert "maxmemory" not in redis_conf(requests_only)
    assert "maxmemory" not in redis_conf(parse(cluster_object()))


def test_integer_config_values_are_written_as_text() -> None:
    cluster = parse(cluster_object(config={"hz": 10, "maxmemory": 1048576, "loglevel": "notice"}))
    conf = redis_conf(cluster).splitlines()
    assert {"hz 10", "maxmemory 1048576", "loglevel notice"} <= set(conf)
    assert cluster.config["hz"] == "10"


@pytest.mark.parametrize(
    ("replicas", "allow", "max_unavailable"),
    [(0, None, 0), (0, False, 0), (0, True, 1), (1, None, 1), (2, False, 1)],
)
def test_a_shard_without_replicas_is_never_drained(
    replicas: int, allow: bool | None, max_unavailable: int
) -> None:
    spec: JSON = {"replicasPerShard": replicas, "storage": {}}
    if allow is not None:
        spec["allowDisruptionWithoutReplicas"] = allow
    cluster = parse(cluster_object(**spec))
    budgets = by_kind(build_all(cluster, "pw"))["PodDisruptionBudget"]
    assert [b["spec"]["maxUnavailable"] for b in budgets] == [max_unavailable] * 3
    assert budgets[1]["spec"]["selector"]["matchLabels"] == {
        "redkube.io/cluster": "cache",
        "redkube.io/shard": "1",
    }


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"config": {"maxmemory": "lots"}}, 'spec.config maxmemory must be a memory size such'
         ' as 100mb, 1gb or 12345 (digits and an optional unit b, k, kb, m, mb, g or gb);'
         ' got "lots"'),
        ({"config": {"maxmemory": "1.5gb"}}, "config maxmemory must be a memory size"),
        ({"config": {"MaxMemory": -1}}, 'config MaxMemory must be a memory size'),
        ({"config": {"hz": "ten"}}, 'spec.config hz must be a whole number, 0 or more, such as'
         ' 10; got "ten"'),
        ({"config": {"timeout": "010"}}, "config timeout must be a whole number, 0 or more"),
        ({"config": {"maxclients": 0}}, "config maxclients must be a whole number, 1 or more"),
        ({"config": {"databases": "0"}}, "config databases must be a whole number, 1 or more"),
        ({"config": {"slowlog-log-slower-than": "-"}}, "must be a whole number such as -1"),
        ({"config": {"lazyfree-lazy-eviction": "1"}}, 'config lazyfree-lazy-eviction must be'
         ' yes or no'),
        ({"config": {"replica-read-only": 1}}, "config replica-read-only must be yes or no"),
        ({"config": {"maxmemory-policy": "lru"}}, 'config maxmemory-policy must be one of'
         ' volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu,'
         ' allkeys-random, noeviction; got "lru"'),
        ({"config": {"appendfsync": "sometimes"}}, "config appendfsync must be one of always,"
         " everysec, no"),
        ({"config": {"loglevel": "loud"}}, "config loglevel must be one of debug, verbose,"
         " notice, warning, nothing"),
        ({"config": {"activerehashing": True}}, "spec.config activerehashing must be a string or"
         " an integer (got True); quote yes, no"),
        ({"config": {"hz": 10.5}}, "spec.config hz must be a string or an integer (got 10.5)"),
        ({"config": {"hz": "10\nport 1"}}, "spec.config values must be a single line: hz"),
        ({"allowDisruptionWithoutReplicas": "yes"}, "spec.allowDisruptionWithoutReplicas must be"
         " true or false"),
        ({"resources": {"limits": {"memory": "lots"}}}, "spec.resources.limits.memory must be a"
         " quantity such as 512Mi or 1.5Gi (got 'lots')"),
        ({"resources": {"limits": {"memory": "-1Gi"}}}, "spec.resources.limits.memory must be"),
    ],
    ids=lambda v: str(v)[:40],
)  # fmt: skip
def test_config_values_the_server_would_refuse_are_refused(spec: JSON, fragment: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse(cluster_object(**spec))
    assert fragment in str(refused.value)


@pytest.mark.parametrize(
    "config",
    [
        {"maxmemory": "100mb"}, {"maxmemory": "1GB"}, {"maxmemory": "12345"}, {"maxmemory": 0},
        {"hz": 10}, {"hz": "0"}, {"maxclients": "10000"}, {"slowlog-log-slower-than": -1},
        {"lazyfree-lazy-eviction": "YES"}, {"replica-read-only": "no"},
        {"maxmemory-policy": "ALLKEYS-LRU"}, {"appendfsync": "everysec"},
        {"loglevel": "nothing"},
        # Keys whose format redkube does not know are passed on as they are.
        {"notify-keyspace-events": "Ex"}, {"save": ""}, {"list-max-listpack-size": -2},
        {"some-future-directive": "whatever it takes"},
    ],
    ids=lambda v: str(v)[:40],
)  # fmt: skip
def test_config_values_the_server_accepts_are_accepted(config: JSON) -> None:
    cluster = parse(cluster_object(config=config))
    assert cluster.config == {k: str(v) for k, v in config.items()}


# -- the metrics sidecar -------------------------------------------------------------------------


def test_every_pod_has_a_metrics_sidecar_reading_the_password_from_the_secret() -> None:
    pod = pod_spec(parse(cluster_object(auth={"secretName": "mine"})))
    server, exporter = pod["containers"]
    assert (server["name"], exporter["name"]) == ("server", "metrics")
    statefulset = build_statefulset(parse(cluster_object()), 0)
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "server"
    assert exporter["image"] == "oliver006/redis_exporter:v1.74.0"
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9121}]
    env = [e["name"] for e in exporter["env"]]
    # $(POD_IP) is expanded only from variables defined before it.
    assert env.index("POD_IP") < env.index("REDIS_ADDR")
    values = {e["name"]: e for e in exporter["env"]}
    assert values["REDIS_ADDR"]["value"] == "redis://$(POD_IP):6379"
    assert values["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mine",
        "key": "password",
    }
    assert "args" not in exporter and "command" not in exporter  # nothing secret in argv
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    assert exporter["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert exporter["resources"]["limits"]["memory"] == "128Mi"
    # A sidecar that does not run must not take the node out of the client Service.
    assert "readinessProbe" not in exporter
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}


def test_metrics_off_leaves_the_server_alone_and_rolls_the_pods() -> None:
    on = parse(cluster_object())
    off = parse(cluster_object(metrics={"enabled": False}))
    assert [c["name"] for c in pod_spec(off)["containers"]] == ["server"]
    assert building.revision(on) != building.revision(off)
    policy_on = building.build_network_policy(on, "redkube-system")
    policy_off = building.build_network_policy(off, "redkube-system")
    assert {"ports": [{"protocol": "TCP", "port": 9121}]} in policy_on["spec"]["ingress"]
    assert not any(
        port["port"] == 9121
        for rule in policy_off["spec"]["ingress"]
        for port in rule.get("ports", [])
    )


def test_the_sidecars_image_and_resources_come_from_the_spec() -> None:
    metrics = {"image": "registry.example/exporter:1", "resources": {"limits": {"memory": "64Mi"}}}
    cluster = parse(cluster_object(metrics=metrics))
    exporter = pod_spec(cluster)["containers"][1]
    assert exporter["image"] == "registry.example/exporter:1"
    assert exporter["resources"] == {"limits": {"memory": "64Mi"}}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"enabled": "yes"}, "spec.metrics.enabled must be true or false"),
        ({"image": ""}, "spec.metrics.image must be an image name"),
        ({"resources": {"limits": {"memory": "lots"}}}, "spec.metrics.resources.limits.memory"),
    ],
)
def test_bad_metrics_settings_are_refused_with_one_clear_line(metrics: JSON, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(cluster_object(metrics=metrics))
