"""A whole test-bed cluster on real nodes: the fabric (network namespaces on one bridge), a
control plane serving on it, the nodes (kubelet, containerd, kube-proxy) with the images
imported, CoreDNS, and the test bed's volume provisioner for the default StorageClass.

`RealCluster.start` returns once every Node is Ready; `stop` leaves nothing behind (processes,
mounts, cgroups, namespaces, links, routes). Used by the test session and by
`python -m redkube.testbed up --real`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from redkube.testbed import coredns
from redkube.testbed.apiclient import ApiClient
from redkube.testbed.controlplane import ControlPlane
from redkube.testbed.fabric import Fabric
from redkube.testbed.provisioner import Provisioner
from redkube.testbed.realnodes import (
    CLUSTER_DNS,
    RealNode,
    remove_machine_leftovers,
    start_nodes,
)


@dataclass
class RealCluster:
    cp: ControlPlane
    fabric: Fabric
    nodes: list[RealNode]
    volumes: Path
    started_in: float
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls, workdir: Path, bindir: Path, node_bins: Path, images: Path, fabric: Fabric
    ) -> RealCluster:
        """`bindir`: testbed/build-binaries.sh's directory; `node_bins`:
        testbed/build-node-binaries.sh's; `images`: testbed/build-images.sh's index. On failure
        whatever was started is stopped again."""
        began = time.monotonic()
        fabric.create()
        cp = ControlPlane(workdir, bindir, host=fabric.host_ip)
        nodes = [RealNode(i, cp, fabric, node_bins, images) for i in range(1, fabric.nodes + 1)]
        cluster = cls(cp, fabric, nodes, cp.workdir / "volumes", 0.0)
        try:
            start_nodes(nodes, meanwhile=cp.start)
            coredns.install(cp, CLUSTER_DNS)
            provisioner = Provisioner(ApiClient.from_kubeconfig(cp.kubeconfig), cluster.volumes)
            provisioner.ensure_storage_class()
            threading.Thread(target=provisioner.run, args=(cluster._stopping,), daemon=True).start()
        except BaseException:
            cluster.stop()
            raise
        cluster.started_in = time.monotonic() - began
        return cluster

    def stop(self) -> None:
        self._stopping.set()
        for node in self.nodes:
            node.stop()
        remove_machine_leftovers()
        self.cp.stop()
        self.fabric.delete()
