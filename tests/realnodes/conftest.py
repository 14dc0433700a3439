"""A control plane with 3 real nodes (kubelet, containerd, runc, CNI bridge, kube-proxy), each in
its own network namespace on one bridge, the images from testbed/build-images.sh imported;
CoreDNS, and local-path-provisioner for the default StorageClass."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkube.testbed.fabric import Fabric
from redkube.testbed.realcluster import RealCluster
from tests.charts.test_helm_chart import CHART, Helm, helm  # noqa: F401 (the fixture)
from tests.testbed.kube import eventually

ROOT = Path(__file__).resolve().parents[2]
IMAGES = (
    Path(os.environ.get("REDKUBE_IMAGE_CACHE", Path.home() / ".cache" / "redkube" / "images"))
    / "index"
)
NODES = 3
OPERATOR_NAMESPACE = "redkube-system"
# The operator image testbed/build-images.sh builds from the Dockerfile, on every node.
OPERATOR_IMAGE, OPERATOR_TAG = "localhost/redkube-operator", "dev"


def _built(script: str) -> Path:
    done = subprocess.run(
        [str(ROOT / "testbed" / script)], capture_output=True, text=True, timeout=1800,
        check=False, env={**os.environ, "PATH": f"{os.environ['PATH']}:/usr/local/go/bin"},
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"{script} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def missing() -> str | None:
    if os.geteuid() != 0:
        return "real nodes need root"
    for tool in ("runc", "iptables", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install runc iptables util-linux)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "the CNI plugins are missing (apt-get install containernetworking-plugins)"
    if not IMAGES.exists():
        return f"no images at {IMAGES} (make testbed-images)"
    return None


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    reason = missing()
    if reason and not os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
        pytest.skip(reason)
    assert reason is None, reason
    bindir, node_bins = _built("build-binaries.sh"), _built("build-node-binaries.sh")
    cluster = RealCluster.start(
        tmp_path_factory.mktemp("real-cp"), bindir, node_bins, IMAGES, Fabric(NODES)
    )
    print(
        f"\ncontrol plane and {NODES} real nodes Ready in {cluster.started_in:.1f}s "
        f"(control plane {cluster.cp.start_seconds or 0:.1f}s; CoreDNS included)"
    )
    try:
        yield cluster
    finally:
        cluster.stop()


def lease_holder(cluster: RealCluster) -> str | None:
    """The operator Pod holding the Lease, if it is one of the running ones."""
    lease = cluster.cp.kubectl("get", "lease", "redkube-operator", "-n", OPERATOR_NAMESPACE,
                               "-o", "json", check=False)  # fmt: skip
    pods = cluster.cp.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "json", check=False)
    if lease.returncode != 0 or pods.returncode != 0:
        return None
    holder = json.loads(lease.stdout)["spec"].get("holderIdentity")
    names = {pod["metadata"]["name"] for pod in json.loads(pods.stdout)["items"]}
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
