"""The Kubernetes test bed shared by the whole test session (registered in tests/conftest.py):
a control plane with 3 real nodes (kubelet, containerd, runc, CNI bridge, kube-proxy), each in
its own network namespace on one bridge, the images from testbed/build-images.sh imported;
CoreDNS, and local-path-provisioner for the default StorageClass."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import ControlPlane
from testbed.fabric import Fabric
from testbed.realcluster import RealCluster
from tests.testbed.kube import eventually

ROOT = Path(__file__).resolve().parents[2]
IMAGES = (
    Path(os.environ.get("REDKUBE_IMAGE_CACHE", Path.home() / ".cache" / "redkube" / "images"))
    / "index"
)
NODES = 3


def built(script: str) -> Path:
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


def start_real_cluster(workdir: Path, fabric: Fabric) -> RealCluster:
    """A real cluster on `fabric` with the built binaries and images (the benchmarks' too)."""
    bindir, node_bins = built("build-binaries.sh"), built("build-node-binaries.sh")
    return RealCluster.start(workdir, bindir, node_bins, IMAGES, fabric)


@pytest.fixture(scope="session")
def bindir() -> Path:
    """The control-plane binaries; a cold build (no cache) takes ~6 minutes and needs Go."""
    return built("build-binaries.sh")


def session_fabric() -> Fabric:
    """The test session's fabric: 10.251 (nodes) and 10.244 (Pods), or the two prefixes in
    REDKUBE_TEST_FABRIC (e.g. `10.249,10.243`), so that a second session can run beside one
    (two sessions on the same prefixes break each other's routes)."""
    chosen = os.environ.get("REDKUBE_TEST_FABRIC")
    if not chosen:
        return Fabric(NODES)
    nodes, pods = chosen.split(",")
    return Fabric(NODES, prefix=nodes.strip(), pods=pods.strip())


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    reason = missing()
    if reason and not os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
        pytest.skip(reason)
    assert reason is None, reason
    cluster = start_real_cluster(tmp_path_factory.mktemp("real-cp"), session_fabric())
    print(
        f"\ncontrol plane and {NODES} real nodes Ready in {cluster.started_in:.1f}s "
        f"(control plane {cluster.cp.start_seconds or 0:.1f}s; CoreDNS included)"
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def control_plane(real_cluster: RealCluster) -> ControlPlane:
    """The real cluster's control plane (kubectl, the kubeconfig)."""
    return real_cluster.cp


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards.

    The name is `<prefix>-<test name, cut>-<hash>`; the prefix is `t`, or the test's
    `namespace_prefix` marker (the operator serves only namespaces starting with `op-`).
    """
    marker = request.node.get_closest_marker("namespace_prefix")
    prefix = marker.args[0] if marker else "t"
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    readable = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{prefix}-{readable}-{digest}"
    control_plane.kubectl("create", "namespace", name)
    # Pods are refused until the namespace's default ServiceAccount exists.
    eventually(
        lambda: control_plane.kubectl(
            "get", "serviceaccount", "default", "-n", name, check=False
        ).returncode == 0,
        "the namespace's default ServiceAccount",
    )  # fmt: skip
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
