"""The operator installed as users install it, on the session's real cluster
(tests/testbed/fixtures.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from testbed.realcluster import RealCluster
from tests.charts.test_helm_chart import CHART, Helm, helm  # noqa: F401 (the fixture)
from tests.testbed.kube import eventually

OPERATOR_NAMESPACE = "redkube-system"
# The operator image testbed/build-images.sh builds from the Dockerfile, on every node.
OPERATOR_IMAGE, OPERATOR_TAG = "localhost/redkube-operator", "dev"


def lease_holder(cluster: RealCluster) -> str | None:
    """The operator Pod holding the Lease, if it is running and not being deleted: after an
    earlier install's uninstall, its Pods stay listed while they terminate, and the Lease can
    still name one of them."""
    lease = cluster.cp.kubectl("get", "lease", "redkube-operator", "-n", OPERATOR_NAMESPACE,
                               "-o", "json", check=False)  # fmt: skip
    pods = cluster.cp.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "json", check=False)
    if lease.returncode != 0 or pods.returncode != 0:
        return None
    holder = json.loads(lease.stdout)["spec"].get("holderIdentity")
    names = {
        pod["metadata"]["name"]
        for pod in json.loads(pods.stdout)["items"]
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
    }
    return holder if holder in names else None


@pytest.fixture
def operator_in_pods(real_cluster: RealCluster, helm: Helm) -> Iterator[None]:  # noqa: F811
    """The operator as users install it: `helm install charts/redkube` (two replicas, leader
    election) with the image built from the Dockerfile; uninstalled afterwards."""
    installed = helm.run(
        "install", "redkube", str(CHART), "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        f"--set=image.repository={OPERATOR_IMAGE}", f"--set=image.tag={OPERATOR_TAG}",
        "--set=image.pullPolicy=Never", "--wait", "--timeout=180s",
        kubeconfig=real_cluster.cp.kubeconfig, check=False, timeout=240,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    # A Lease left by an earlier install names a Pod that is gone until it expires.
    eventually(lambda: lease_holder(real_cluster), "an operator Pod holding the Lease", 180)
    try:
        yield
    finally:
        helm.run("uninstall", "redkube", "--namespace", OPERATOR_NAMESPACE,
                 kubeconfig=real_cluster.cp.kubeconfig, check=False)  # fmt: skip
        # The next install must not find this one's Pods still terminating.
        eventually(lambda: not operator_pods(real_cluster), "the operator Pods gone", 180)


def operator_pods(cluster: RealCluster) -> list[str]:
    """The Pods in the operator's namespace, terminating or not; ["?"] when the list fails."""
    listed = cluster.cp.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "name", check=False)
    return listed.stdout.split() if listed.returncode == 0 else ["?"]
