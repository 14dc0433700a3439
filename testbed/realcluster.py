"""A whole test-bed cluster on real nodes: the fabric (network namespaces on one bridge), a
control plane serving on it, the nodes (kubelet, containerd, kube-proxy) with the images
imported, CoreDNS, and rancher's local-path-provisioner for the default StorageClass (each
node's volumes under `volumes/<node>`).

`RealCluster.start` returns once every Node is Ready; `stop` leaves nothing behind (processes,
mounts, cgroups, namespaces, links, routes). Used by the test session and by
`python -m testbed up`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from testbed import coredns, localpath
from testbed.controlplane import ControlPlane
from testbed.fabric import Fabric
from testbed.realnodes import (
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
            localpath.install(cp, {node.name: cluster.volumes / node.name for node in nodes})
        except BaseException:
            cluster.stop()
            raise
        cluster.started_in = time.monotonic() - began
        return cluster

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        remove_machine_leftovers()
        self.cp.stop()
        self.fabric.delete()
