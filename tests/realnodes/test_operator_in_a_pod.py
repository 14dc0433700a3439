"""The operator the way users install it: `helm install charts/redkube` with the image built from
the project's Dockerfile, two replicas and leader election, on real nodes; then the kubectl
workflow against it: apply a 3x1 RedisCluster, 6 Ready Pods, `redis-cli --cluster check` clean,
a client Pod through the Services' DNS names, a master's Pod deleted and healed, every key back."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from redis.cluster import ClusterNode, RedisCluster

from testbed.realcluster import RealCluster
from tests.operator.test_kubectl_workflow import CLUSTER, password
from tests.realnodes.conftest import OPERATOR_NAMESPACE, lease_holder
from tests.realnodes.test_real_nodes import kubectl, ready_pod, wait_for
from tests.testbed.kube import eventually


def status(cluster: RealCluster, namespace: str) -> dict[str, object]:
    done = cluster.cp.kubectl("get", "rdc", "shop", "-n", namespace, "-o", "json", check=False)
    found: dict[str, object] = json.loads(done.stdout).get("status") or {} if done.stdout else {}
    return found


def shop_ready(cluster: RealCluster, namespace: str) -> bool:
    """The status says Ready with all 6 nodes healthy."""
    found = status(cluster, namespace)
    return found.get("phase") == "Ready" and found.get("readyNodes") == "6/6"


def pod_ips(cluster: RealCluster, namespace: str) -> dict[str, str]:
    listed = kubectl(
        cluster, "get", "pods", "-n", namespace, "-l", "redkube.io/cluster=shop", "-o", "json"
    )
    pods = json.loads(listed)["items"]
    return {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods}


def deploy_shop(cluster: RealCluster, namespace: str) -> float:
    """A new namespace with the 3x1 RedisCluster `shop` (Valkey 9.1) in it, Ready 6/6; returns
    the seconds from `kubectl apply` to Ready."""
    kubectl(cluster, "create", "namespace", namespace)
    wait_for(
        "the namespace's ServiceAccount",
        lambda: (
            cluster.cp.kubectl(
                "get", "serviceaccount", "default", "-n", namespace, check=False
            ).returncode
            == 0
        ),
    )
    applied = time.monotonic()
    kubectl(
        cluster, "apply", "-n", namespace, "-f", "-",
        input=CLUSTER % {"image": "valkey/valkey:9.1"},
    )  # fmt: skip
    wait_for("shop Ready with 6/6 nodes", lambda: shop_ready(cluster, namespace), 420)
    return time.monotonic() - applied


@pytest.mark.timeout(900)
def test_helm_installed_operator_runs_the_kubectl_workflow(
    real_cluster: RealCluster, operator_in_pods: None
) -> None:
    cluster = real_cluster
    namespace = "shop"
    try:
        leader = eventually(lambda: lease_holder(cluster), "a running operator Pod leading", 180)
        assert leader.startswith("redkube-"), leader
        logs = kubectl(cluster, "logs", "-n", OPERATOR_NAMESPACE, leader)
        assert "became leader" in logs, logs[-2000:]

        seconds = deploy_shop(cluster, namespace)
        print(
            f"\nkubectl apply of a 3x1 RedisCluster to Ready 6/6 (operator in Pods): {seconds:.1f}s"
        )
        secret = password(cluster.cp, namespace)
        ips = pod_ips(cluster, namespace)
        check = subprocess.run(
            ["redis-cli", "-a", secret, "--no-auth-warning", "--cluster", "check",
             f"{ips['shop-0-0']}:6379"], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "[OK] All 16384 slots covered." in check.stdout, check.stdout
        assert "[ERR]" not in check.stdout and "[WARNING]" not in check.stdout, check.stdout

        # A client Pod, through the client Service's DNS name. It idles and the command runs by
        # exec: `kubectl run -i --rm` of a short command can lose its output (the container ends
        # before the attach).
        kubectl(
            cluster, "run", "client", "-n", namespace, "--image=valkey/valkey:9.1",
            "--image-pull-policy=Never", "--restart=Never", "--command", "--", "sleep", "600",
        )  # fmt: skip
        wait_for("the client Pod Ready", lambda: ready_pod(cluster, namespace, "client"), 180)
        said = kubectl(
            cluster, "exec", "-n", namespace, "client", "--",
            "redis-cli", "-c", "-h", f"shop.{namespace}.svc.cluster.local", "-a", secret,
            "--no-auth-warning", "set", "through-dns", "yes",
        )  # fmt: skip
        assert "OK" in said, said

        client = RedisCluster(
            startup_nodes=[ClusterNode(ip, 6379) for ip in ips.values()], password=secret
        )
        keys = {f"key:{i}": str(i) for i in range(2000)}
        for key, value in keys.items():
            client.set(key, value)
        client.close()

        master = next(
            name for name, ip in ips.items()
            if "role:master" in subprocess.run(
                ["redis-cli", "-h", ip, "-a", secret, "--no-auth-warning", "info", "replication"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout
        )  # fmt: skip
        kubectl(cluster, "delete", "pod", "-n", namespace, master)
        time.sleep(1)
        wait_for(
            f"healed after {master} was deleted",
            lambda: shop_ready(cluster, namespace) and ready_pod(cluster, namespace, master),
            300,
        )  # fmt: skip
        ips = pod_ips(cluster, namespace)
        client = RedisCluster(
            startup_nodes=[ClusterNode(ip, 6379) for ip in ips.values()], password=secret
        )
        assert {key: client.get(key) for key in keys} == {
            key: value.encode() for key, value in keys.items()
        }
        assert client.get("through-dns") == b"yes"
        client.close()
    finally:
        cluster.cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
