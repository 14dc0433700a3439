"""Every object the operator owns for one RedisCluster, as pure builders (one per object).

    objects = build_all(cluster, password)

Names, for a RedisCluster `c`:
- StatefulSet `c-<shard>` per shard, Pods `c-<shard>-<ordinal>` (ordinal 0 starts as master);
- Services `c-nodes` (headless, per-Pod DNS) and `c` (clients);
- PodDisruptionBudget `c-<shard>`, ConfigMap `c-config`, Secret `c-auth` (unless the user names
  one in spec.auth.secretName), NetworkPolicy `c-network` (unless spec.networkPolicy.enabled is
  false).
"""

from __future__ import annotations

import base64
import hashlib
import json
from fractions import Fraction
from typing import Any

from redkube.kubernetes.clusters import RedisCluster
from redkube.model.live_settings import is_live
from redkube.model.settings import cluster_settings, render

JSON = dict[str, Any]

API_VERSION = "redkube.io/v1alpha1"
KIND = "RedisCluster"
REDIS_PORT = 6379
BUS_PORT = 16379
METRICS_PORT = 9121
SERVER_CONTAINER = "server"
EXPORTER_CONTAINER = "metrics"
SERVER_USER = 999
ZONE_LABEL = "topology.kubernetes.io/zone"
PASSWORD_KEY = "password"
DEFAULT_OPERATOR_NAMESPACE = "redkube-system"
CONFIG_DIR = "/etc/redkube"
RUN_DIR = "/run/redkube"
DATA_DIR = "/data"

# Every redis-cli call in the hooks and probes is bounded with `timeout` (redis-cli's own `-t`
# exists only from Redis 7.2): a hung or unreachable server must not hang a hook or a probe.
CLI_TIMEOUT_S = 2
PROBE_CLI_TIMEOUT_S = 1
HANDOVER_WAIT_S = 10
"""How long preStop waits for the replica it asked to CLUSTER FAILOVER to take the role over."""
PRESTOP_MAX_S = 4 * CLI_TIMEOUT_S + HANDOVER_WAIT_S + 2
"""preStop at worst: ROLE, INFO and CLUSTER FAILOVER each cut off after CLI_TIMEOUT_S, then ROLE
polls until HANDOVER_WAIT_S has passed (the last poll may start just before the deadline: one
more CLI_TIMEOUT_S), plus 2 s for the one-second clock (`date +%s`) and the last 0.2 s sleep."""
SHUTDOWN_TIMEOUT_S = 10
"""The servers' `shutdown-timeout` default (Redis 7 and Valkey): on SIGTERM
(`shutdown-on-sigterm default`) a master waits this long for its replicas to catch up."""
SHUTDOWN_WRITE_S = 20
"""After that wait, time to write the RDB snapshot and flush the AOF."""
SHUTDOWN_S = SHUTDOWN_TIMEOUT_S + SHUTDOWN_WRITE_S
"""After preStop, SIGTERM: the server's own wait for its replicas, then its writes."""
GRACE_SECONDS = PRESTOP_MAX_S + SHUTDOWN_S
"""terminationGracePeriodSeconds: covers the whole preStop hand-over and a clean shutdown
(Kubernetes counts the preStop hook inside the grace period)."""
MAXMEMORY_SHARE = Fraction(3, 4)

START_SCRIPT = f"""\
#!/bin/sh
# Start the server with this Pod's address; the password goes into a file, not the arguments.
set -eu
umask 077
password=$(printf '%s' "$REDIS_PASSWORD" | sed 's/[\\\\"]/\\\\&/g')
printf 'requirepass "%s"\\nmasterauth "%s"\\n' "$password" "$password" > {RUN_DIR}/auth.conf
# Also listen on the Pod's own loopback (kubectl exec ... redis-cli, port-forward, sidecars);
# the Pod IP stays the announced address. A Pod IP that is itself a loopback address means the
# Pod shares the machine's network namespace (the test bed), where 127.0.0.1 is not its own.
case "$POD_IP" in 127.*) loopback="" ;; *) loopback="127.0.0.1" ;; esac
exec "$REDKUBE_SERVER" {CONFIG_DIR}/redis.conf --include {RUN_DIR}/auth.conf \\
  --bind "$POD_IP" $loopback --bind-source-addr "$POD_IP" --cluster-announce-ip "$POD_IP"
"""

PRESTOP_SCRIPT = f"""\
#!/bin/sh
# Before a master stops, hand its role to an in-sync replica, so clients see no errors.
# Bounded (terminationGracePeriodSeconds covers it): every redis-cli call is cut off after
# {CLI_TIMEOUT_S}s, the wait for the replica to take over after {HANDOVER_WAIT_S}s.
set -u
cli() {{ timeout {CLI_TIMEOUT_S} redis-cli "$@"; }}
role() {{ cli -h "$1" role 2>/dev/null | head -n 1; }}
[ "$(role "$POD_IP")" = "master" ] || exit 0
replica=$(cli -h "$POD_IP" info replication | tr -d '\\r' \\
  | sed -n 's/^slave[0-9]*:ip=\\([^,]*\\),.*state=online.*/\\1/p' | head -n 1)
[ -n "$replica" ] || exit 0
cli -h "$replica" cluster failover >/dev/null 2>&1 || exit 0
deadline=$(($(date +%s) + {HANDOVER_WAIT_S}))
while [ "$(date +%s)" -lt "$deadline" ]; do
  [ "$(role "$POD_IP")" = "slave" ] && exit 0
  sleep 0.2
done
"""

READY_SCRIPT = f"""\
#!/bin/sh
# Ready only as a working member of a working cluster: CLUSTER INFO says cluster_state:ok and,
# on a replica, INFO replication says master_link_status:up. A node not (yet) in the cluster, or
# in a failed one, gets no client traffic through the Service.
set -u
cli() {{ timeout {PROBE_CLI_TIMEOUT_S} redis-cli -h "$POD_IP" "$@" 2>/dev/null | tr -d '\\r'; }}
cli cluster info | grep -qx 'cluster_state:ok' || exit 1
link=$(cli info replication | grep '^master_link_status:')
[ -z "$link" ] || [ "$link" = "master_link_status:up" ]
"""


CLUSTER_LABEL = "redkube.io/cluster"
SHARD_LABEL = "redkube.io/shard"
RESTORE_LABEL = "redkube.io/restore-of"  # on a restore's loader Pod: the cluster it loads into
REVISION_ANNOTATION = "redkube.io/revision"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def labels(cluster: RedisCluster, shard: int | None = None) -> dict[str, str]:
    return {"app.kubernetes.io/name": cluster.family, **stable_labels(cluster, shard)}


def stable_labels(cluster: RedisCluster, shard: int | None = None) -> dict[str, str]:
    """Labels that never change over a cluster's life (not the server family, which a version
    change may change): for immutable fields, a StatefulSet's volumeClaimTemplates."""
    return {
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/managed-by": "redkube",
        **selector(cluster, shard),
    }


def selector(cluster: RedisCluster, shard: int | None = None) -> dict[str, str]:
    result = {CLUSTER_LABEL: cluster.name}
    if shard is not None:
        result[SHARD_LABEL] = str(shard)
    return result


def metadata(cluster: RedisCluster, name: str, shard: int | None = None) -> JSON:
    meta: JSON = {"name": name, "namespace": cluster.namespace, "labels": labels(cluster, shard)}
    if cluster.uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": cluster.name,
                "uid": cluster.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def config_map_name(cluster: RedisCluster) -> str:
    return f"{cluster.name}-config"


def headless_service_name(cluster: RedisCluster) -> str:
    return f"{cluster.name}-nodes"


def statefulset_name(cluster: RedisCluster, shard: int) -> str:
    return f"{cluster.name}-{shard}"


def maxmemory_for(limit: int) -> int:
    """maxmemory for a container whose memory limit is `limit` bytes: MAXMEMORY_SHARE (3/4).

    maxmemory bounds the dataset only. The rest of the container's memory goes to what Redis
    does not count against it: the replication buffers (backlog, replicas' output) during a
    sync, the copy-on-write pages of the forked child that writes RDB snapshots, rewrites the
    AOF and feeds diskless full syncs (up to the whole dataset again under heavy writes, usually
    far less), allocator fragmentation, client buffers and Lua. With a quarter kept for those,
    a full dataset is refused (OOM errors, or evictions by maxmemory-policy) instead of the
    kernel killing the container and the shard losing its master.
    """
    return int(limit * MAXMEMORY_SHARE)


def redis_conf(cluster: RedisCluster) -> str:
    settings = [
        ("port", str(REDIS_PORT)),
        ("dir", DATA_DIR),
        *cluster_settings(cluster.cluster, aof=cluster.aof),
    ]
    limit = cluster.memory_limit
    user_keys = {key.lower() for key in cluster.config}
    if limit and "maxmemory" not in user_keys:
        settings.append(("maxmemory", str(maxmemory_for(limit))))
    settings += sorted(cluster.config.items())
    return render(settings)


def build_config_map(cluster: RedisCluster) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cluster, config_map_name(cluster)),
        "data": {
            "redis.conf": redis_conf(cluster),
            "start.sh": START_SCRIPT,
            "prestop.sh": PRESTOP_SCRIPT,
            "ready.sh": READY_SCRIPT,
        },
    }


def build_secret(cluster: RedisCluster, password: str) -> JSON:
    """The generated password Secret (only when spec.auth.secretName is not set)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(cluster, cluster.secret_name),
        "type": "Opaque",
        "data": {PASSWORD_KEY: base64.b64encode(password.encode()).decode()},
    }


def _ports() -> list[JSON]:
    return [
        {"name": "redis", "port": REDIS_PORT, "targetPort": REDIS_PORT},
        {"name": "bus", "port": BUS_PORT, "targetPort": BUS_PORT},
    ]


def build_headless_service(cluster: RedisCluster) -> JSON:
    """Stable per-Pod DNS names (`<pod>.<cluster>-nodes`), ready or not (a node must be
    reachable before it is part of the cluster)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, headless_service_name(cluster)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector(cluster),
            "ports": _ports(),
        },
    }


def build_client_service(cluster: RedisCluster) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, cluster.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(cluster),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": REDIS_PORT}],
        },
    }


def build_pod_disruption_budget(cluster: RedisCluster, shard: int) -> JSON:
    """At most one node of a shard down by choice (drains, evictions) at a time; none at all
    when the shard has no replica, since its one Pod holds the only copy of the shard's data
    (unless spec.allowDisruptionWithoutReplicas says the user accepts losing it)."""
    alone = cluster.cluster.replicas == 0 and not cluster.allow_disruption_without_replicas
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cluster, statefulset_name(cluster, shard), shard),
        "spec": {
            "maxUnavailable": 0 if alone else 1,
            "selector": {"matchLabels": selector(cluster, shard)},
        },
    }


def _affinity(cluster: RedisCluster, shard: int) -> JSON:
    """A shard's Pods on different topology domains: its replicas never beside its master."""
    term = {
        "labelSelector": {"matchLabels": selector(cluster, shard)},
        "topologyKey": cluster.placement.topology_key,
    }
    if cluster.placement.required:
        anti: JSON = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    else:
        anti = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    return {"podAntiAffinity": anti}


def _env(cluster: RedisCluster) -> list[JSON]:
    password_ref = {"secretKeyRef": {"name": cluster.secret_name, "key": PASSWORD_KEY}}
    return [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "REDIS_PASSWORD", "valueFrom": password_ref},
        {"name": "REDISCLI_AUTH", "valueFrom": password_ref},
        {"name": "REDKUBE_SERVER", "value": f"{cluster.family}-server"},
    ]


SECURE_POD: JSON = {  # a server Pod's: the image's user (999), not root, the default seccomp
    "runAsNonRoot": True,
    "runAsUser": SERVER_USER,
    "runAsGroup": SERVER_USER,
    "fsGroup": SERVER_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
SECURE_CONTAINER: JSON = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def _container(cluster: RedisCluster) -> JSON:
    container: JSON = {
        "name": SERVER_CONTAINER,
        "image": cluster.image,
        "command": ["sh", f"{CONFIG_DIR}/start.sh"],
        "env": _env(cluster),
        "ports": [
            {"name": "redis", "containerPort": REDIS_PORT},
            {"name": "bus", "containerPort": BUS_PORT},
        ],
        # Ready = a working member of a working cluster (see READY_SCRIPT); the headless
        # Service publishes not-ready Pods, so nodes still find each other to form it.
        "readinessProbe": {
            "exec": {"command": ["sh", f"{CONFIG_DIR}/ready.sh"]},
            "periodSeconds": 2,
            "timeoutSeconds": 2 * PROBE_CLI_TIMEOUT_S + 1,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "redis"},
            "initialDelaySeconds": 10,
            "periodSeconds": 5,
            "failureThreshold": 6,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["sh", f"{CONFIG_DIR}/prestop.sh"]}}},
        # A server that exits at once (a config value it refuses) leaves its last log lines as
        # the termination message: the operator quotes them in the RedisCluster's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(SECURE_CONTAINER),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "run", "mountPath": RUN_DIR},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    }
    if cluster.resources:
        container["resources"] = dict(cluster.resources)
    return container


def _exporter(cluster: RedisCluster) -> JSON:
    """The redis_exporter sidecar: it reads its own node (the Pod's address) with the cluster's
    password from the Secret, by environment (never in its arguments, which `ps` and the Pod's
    spec show), and serves /metrics on METRICS_PORT. No readiness probe: a sidecar that does
    not run (its image missing) must not take the node out of the client Service."""
    password_ref = {"secretKeyRef": {"name": cluster.secret_name, "key": PASSWORD_KEY}}
    return {
        "name": EXPORTER_CONTAINER,
        "image": cluster.metrics.image,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "REDIS_ADDR", "value": f"redis://$(POD_IP):{REDIS_PORT}"},
            {"name": "REDIS_PASSWORD", "valueFrom": password_ref},
            {"name": "REDIS_EXPORTER_WEB_LISTEN_ADDRESS", "value": f":{METRICS_PORT}"},
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "metrics"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": dict(cluster.metrics.resources),
        "securityContext": dict(SECURE_CONTAINER),
    }


def grace_seconds(cluster: RedisCluster) -> int:
    """terminationGracePeriodSeconds: the preStop hand-over, then the server's own shutdown
    (its `shutdown-timeout`, the user's if spec.config sets one, plus its writes), so that
    Kubernetes never SIGKILLs a server that is still shutting down as it was told to."""
    user = {key.lower(): value for key, value in cluster.config.items()}.get("shutdown-timeout")
    timeout = int(user) if user is not None and user.isdigit() else SHUTDOWN_TIMEOUT_S
    return PRESTOP_MAX_S + max(timeout, SHUTDOWN_TIMEOUT_S) + SHUTDOWN_WRITE_S


def _pod_spec(cluster: RedisCluster, shard: int) -> JSON:
    volumes: list[JSON] = [
        {"name": "config", "configMap": {"name": config_map_name(cluster)}},
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]
    if cluster.storage is None:
        volumes.append({"name": "data", "emptyDir": {}})
    spec: JSON = {
        "terminationGracePeriodSeconds": grace_seconds(cluster),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": dict(SECURE_POD),
        "affinity": _affinity(cluster, shard),
        "containers": [
            _container(cluster),
            *([_exporter(cluster)] if cluster.metrics.enabled else []),
        ],
        "volumes": volumes,
    }
    if cluster.placement.zone_spread:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": ZONE_LABEL,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(cluster, shard)},
            }
        ]
    return spec


def build_statefulset(cluster: RedisCluster, shard: int) -> JSON:
    """One shard: a master and its replicas. `OnDelete`: the operator decides every restart
    (it fails a master over before deleting its Pod)."""
    spec: JSON = {
        "serviceName": headless_service_name(cluster),
        "replicas": cluster.cluster.members_per_shard,
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"},
        "selector": {"matchLabels": selector(cluster, shard)},
        "template": {
            "metadata": {
                "labels": labels(cluster, shard),
                "annotations": {
                    REVISION_ANNOTATION: revision(cluster),
                    # `kubectl exec`/`logs` without -c: the server, not the sidecar.
                    DEFAULT_CONTAINER_ANNOTATION: SERVER_CONTAINER,
                },
            },
            "spec": _pod_spec(cluster, shard),
        },
    }
    if cluster.storage is not None:
        claim: JSON = {
            "metadata": {"name": "data", "labels": stable_labels(cluster, shard)},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": cluster.storage.size}},
            },
        }
        if cluster.storage.storage_class:
            claim["spec"]["storageClassName"] = cluster.storage.storage_class
        spec["volumeClaimTemplates"] = [claim]
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": cluster.pvc_retention,
            "whenScaled": "Retain",
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(cluster, statefulset_name(cluster, shard), shard),
        "spec": spec,
    }


def revision(cluster: RedisCluster) -> str:
    """What a node's process is defined by, as a short hash: the Pod template (image,
    resources, probes, ...) and every redis.conf setting a running server cannot take by CONFIG
    SET. It is the Pod template's `redkube.io/revision` annotation: a Pod that carries another
    one is outdated, and the operator restarts it (replicas first, a master after a failover).
    Live settings reach running nodes by CONFIG SET and change no revision."""
    restart_settings = [
        line for line in redis_conf(cluster).splitlines() if not is_live(line.split(" ", 1)[0])
    ]
    defined = {
        "pod": _pod_spec(cluster, 0),
        "labels": labels(cluster, 0),
        "conf": restart_settings,
        "scripts": [START_SCRIPT, PRESTOP_SCRIPT, READY_SCRIPT],
    }
    text = json.dumps(defined, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def network_policy_name(cluster: RedisCluster) -> str:
    return f"{cluster.name}-network"


def build_network_policy(cluster: RedisCluster, operator_namespace: str) -> JSON:
    """Ingress to the cluster's Pods: from each other on every port (the cluster bus, and
    replication on the client port); on the client port only, from the operator's namespace, from
    a restore's loader Pods (they MIGRATE keys in) and from the clients of
    spec.networkPolicy.clients; on the metrics port (when spec.metrics is on),
    from anywhere, since where Prometheus runs is not known. Egress: to each other, and DNS; a
    server connects to nothing else (its probes, hooks and sidecar talk to the Pod's own address,
    which stays inside the Pod). Enforced by the cluster's network plugin, where it has one that
    enforces NetworkPolicy."""
    own = {"podSelector": {"matchLabels": selector(cluster)}}
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}}
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(cluster, network_policy_name(cluster)),
        "spec": {
            "podSelector": {"matchLabels": selector(cluster)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [own]},
                {
                    "from": [
                        operator,
                        {"podSelector": {"matchLabels": {RESTORE_LABEL: cluster.name}}},
                        *(dict(peer) for peer in cluster.network.clients),
                    ],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                },
                *(
                    [{"ports": [{"protocol": "TCP", "port": METRICS_PORT}]}]
                    if cluster.metrics.enabled
                    else []
                ),
            ],
            "egress": [
                {"to": [own]},
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            ],
        },
    }


def build_all(
    cluster: RedisCluster, password: str, operator_namespace: str = DEFAULT_OPERATOR_NAMESPACE
) -> list[JSON]:
    """Everything, in the order to create it (a Secret and ConfigMap before the Pods need them).
    ``operator_namespace``: where the operator runs (its Pods reach the client port)."""
    objects: list[JSON] = []
    if cluster.auth_secret is None:
        objects.append(build_secret(cluster, password))
    objects += [
        build_config_map(cluster),
        build_headless_service(cluster),
        build_client_service(cluster),
    ]
    if cluster.network.enabled:
        objects.append(build_network_policy(cluster, operator_namespace))
    for shard in range(cluster.cluster.shards):
        objects += [build_statefulset(cluster, shard), build_pod_disruption_budget(cluster, shard)]
    return objects
