"""rancher's local-path-provisioner on real nodes: a
claim gets a local volume on its Pod's node, with the Pod's fsGroup, that a Valkey running as
uid 999 writes; the data outlives the Pod; deleting the claim deletes the volume and its
directory. (The session's cluster: its default StorageClass is local-path's.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from testbed import localpath
from testbed.realcluster import RealCluster
from tests.testbed.kube import eventually

JSON = dict[str, Any]

CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
"""
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: kv}
spec:
  securityContext: {runAsUser: 999, fsGroup: 999}
  containers:
  - name: kv
    image: valkey/valkey:9.1
    imagePullPolicy: Never
    args: [--appendonly, "yes", --protected-mode, "no"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
"""


def get(cluster: RealCluster, *what: str) -> JSON | None:
    done = cluster.cp.kubectl("get", *what, "-o", "json", check=False)
    found: JSON | None = json.loads(done.stdout) if done.returncode == 0 else None
    return found


def valkey(cluster: RealCluster, *command: str) -> str | None:
    """The command's reply, or None while the server does not answer yet."""
    done = cluster.cp.kubectl("exec", "kv", "--", "valkey-cli", *command, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def helper_pods(cluster: RealCluster) -> list[str] | None:
    """The provisioner's helper Pods (its own Pod has the label `app`)."""
    found = get(cluster, "pods", "-n", localpath.NAMESPACE, "-l", "!app")
    return None if found is None else [pod["metadata"]["name"] for pod in found["items"]]


def start_valkey(cluster: RealCluster) -> str:
    """Start the Pod; return its node once it answers PING."""
    cluster.cp.kubectl("apply", "-f", "-", input=POD)
    cluster.cp.kubectl("wait", "--for=condition=Ready", "pod/kv", "--timeout=120s", timeout=150)
    try:
        eventually(lambda: valkey(cluster, "ping") == "PONG", "Valkey answers", 30)
    except AssertionError as failed:
        log = cluster.cp.kubectl("logs", "kv", "--tail=5", check=False)
        raise AssertionError(f"{failed}; its log ends:\n{log.stdout}{log.stderr}") from None
    pod = get(cluster, "pod", "kv")
    assert pod is not None
    node: str = pod["spec"]["nodeName"]
    return node


@pytest.mark.timeout(600)
def test_local_path_volumes_for_uid_999_outlive_the_pod_and_go_with_the_claim(
    real_cluster: RealCluster,
) -> None:
    cluster = real_cluster
    paths = {node.name: cluster.volumes / node.name for node in cluster.nodes}
    try:
        began = time.monotonic()
        cluster.cp.kubectl("apply", "-f", "-", input=CLAIM)
        node = start_valkey(cluster)
        print(f"claim bound and Valkey up on {node} in {time.monotonic() - began:.1f}s")
        claim = get(cluster, "pvc", "data")
        assert claim is not None and claim["status"]["phase"] == "Bound", claim
        pv = get(cluster, "pv", claim["spec"]["volumeName"])
        assert pv is not None
        assert (
            pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"]
            == "rancher.io/local-path"
        )
        assert pv["spec"]["storageClassName"] == "standard"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
        ]}], terms  # fmt: skip
        directory = Path(pv["spec"]["local"]["path"])
        assert directory.parent == paths[node], (directory, paths)
        assert directory.stat().st_gid == 999, "a local volume gets the Pod's fsGroup"

        assert valkey(cluster, "set", "greeting", "hello") == "OK"
        aof = directory / "appendonlydir"
        assert aof.is_dir() and aof.stat().st_uid == 999, "Valkey (uid 999) wrote its AOF there"

        cluster.cp.kubectl("delete", "pod", "kv", "--timeout=90s", timeout=120)
        assert start_valkey(cluster) == node, "the Pod follows its volume to its node"
        assert valkey(cluster, "get", "greeting") == "hello"

        cluster.cp.kubectl("delete", "pod", "kv", "--timeout=90s", timeout=120)
        began = time.monotonic()
        cluster.cp.kubectl("delete", "pvc", "data", "--timeout=60s", timeout=90)
        eventually(
            lambda: get(cluster, "pv", pv["metadata"]["name"]) is None, "the PV deleted", 120, 0.5
        )
        print(f"claim deleted: PV and directory gone in {time.monotonic() - began:.1f}s")
        assert not directory.exists(), "the teardown helper Pod removed the directory"
        eventually(lambda: helper_pods(cluster) == [], "no helper Pod left", 60, 0.5)
    finally:
        cluster.cp.kubectl("delete", "pod", "kv", "--ignore-not-found", check=False)
        cluster.cp.kubectl("delete", "pvc", "data", "--ignore-not-found", check=False)
