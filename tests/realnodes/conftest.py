"""A control plane with 3 real nodes (kubelet, containerd, runc, CNI bridge, kube-proxy), each in
its own network namespace on one bridge, the images from testbed/build-images.sh imported; and
the test bed's volume provisioner for the default StorageClass."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from redkube.testbed import ControlPlane, coredns
from redkube.testbed.apiclient import ApiClient
from redkube.testbed.fabric import Fabric
from redkube.testbed.provisioner import Provisioner
from redkube.testbed.realnodes import (
    CLUSTER_DNS,
    RealNode,
    remove_machine_leftovers,
    start_nodes,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGES = (
    Path(os.environ.get("REDKUBE_IMAGE_CACHE", Path.home() / ".cache" / "redkube" / "images"))
    / "index"
)
NODES = 3


def _built(script: str) -> Path:
    done = subprocess.run(
        [str(ROOT / "testbed" / script)], capture_output=True, text=True, timeout=1800,
        check=False, env={**os.environ, "PATH": f"{os.environ['PATH']}:/usr/local/go/bin"},
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"{script} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class RealCluster:
    cp: ControlPlane
    fabric: Fabric
    nodes: list[RealNode]
    volumes: Path
    started_in: float


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
    fabric = Fabric(NODES)
    began = time.monotonic()
    fabric.create()
    cp = ControlPlane(tmp_path_factory.mktemp("real-cp"), bindir, host=fabric.host_ip)
    nodes = [RealNode(i, cp, fabric, node_bins, IMAGES) for i in range(1, NODES + 1)]
    stop = threading.Event()
    volumes = cp.workdir / "volumes"
    try:
        cp.start()
        start_nodes(nodes)
        coredns.install(cp, CLUSTER_DNS)
        provisioner = Provisioner(ApiClient.from_kubeconfig(cp.kubeconfig), volumes)
        provisioner.ensure_storage_class()
        threading.Thread(target=provisioner.run, args=(stop,), daemon=True).start()
        cluster = RealCluster(cp, fabric, nodes, volumes, time.monotonic() - began)
        print(
            f"\ncontrol plane and {NODES} real nodes Ready in {cluster.started_in:.1f}s "
            f"(control plane {cp.start_seconds or 0:.1f}s; CoreDNS included)"
        )
        yield cluster
    finally:
        stop.set()
        for node in nodes:
            node.stop()
        remove_machine_leftovers()
        cp.stop()
        fabric.delete()
