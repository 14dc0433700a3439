"""The objects of a restore's loader (pure): one standalone server Pod, from the cluster's own
image, that loads one snapshot of a backup (the operator serves it as the server's master) and
hands its keys to the cluster's masters (MIGRATE). Its settings, with a password of its own, are
in a Secret mounted as its configuration file: never in its arguments."""

from __future__ import annotations

import base64

from redkube.kubernetes.building import (
    REDIS_PORT,
    RESTORE_LABEL,
    SECURE_CONTAINER,
    SECURE_POD,
    metadata,
)
from redkube.kubernetes.clusters import RedisCluster
from redkube.kubernetes.resources import JSON

LOADER_DIR = "/etc/redkube-loader"


def loader_name(cluster: RedisCluster, snapshot: int) -> str:
    return f"{cluster.name}-restore-{snapshot}"


def loader_conf(password: str) -> str:
    return "\n".join([
        f"port {REDIS_PORT}",
        "protected-mode no",
        f"requirepass {password}",
        'save ""',
        "appendonly no",
        "dir /data",
        "repl-diskless-load on-empty-db",  # straight from the operator's stream into memory
        "repl-timeout 600",
        "",
    ])  # fmt: skip


def _metadata(cluster: RedisCluster, name: str) -> JSON:
    meta = metadata(cluster, name)
    # Not the cluster's selector labels: a loader is no member (the loop never sees it).
    meta["labels"] = {
        "app.kubernetes.io/name": cluster.family,
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/managed-by": "redkube",
        RESTORE_LABEL: cluster.name,
    }
    return meta


def build_loader_secret(cluster: RedisCluster, snapshot: int, password: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(cluster, loader_name(cluster, snapshot)),
        "type": "Opaque",
        "data": {"loader.conf": base64.b64encode(loader_conf(password).encode()).decode()},
    }


def build_loader_pod(cluster: RedisCluster, snapshot: int) -> JSON:
    name = loader_name(cluster, snapshot)
    container: JSON = {
        "name": "server",
        "image": cluster.image,
        "command": [f"{cluster.family}-server", f"{LOADER_DIR}/loader.conf"],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 2},
        "securityContext": dict(SECURE_CONTAINER),
        "volumeMounts": [
            {"name": "config", "mountPath": LOADER_DIR, "readOnly": True},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    if cluster.resources:
        container["resources"] = dict(cluster.resources)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(cluster, name),
        "spec": {
            "restartPolicy": "Never",
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "securityContext": dict(SECURE_POD),
            "containers": [container],
            "volumes": [
                {"name": "config", "secret": {"secretName": name, "defaultMode": 0o440}},
                {"name": "data", "emptyDir": {}},
            ],
        },
    }
