"""Test-bed Nodes: registration, the Ready condition, Lease renewal, and pod IPs.

Node `i` (1-based) of network `127.N` has the address 127.N.i.1, serves the kubelet API on
port 10250 there, and gives its Pods the addresses 127.N.i.2 to 127.N.i.254.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field

from redkube.testbed.apiclient import JSON, ApiClient, ApiError, timestamp

KUBELET_PORT = 10250
LEASE_SECONDS = 40
ZONES = ("zone-a", "zone-b", "zone-c")
CAPACITY = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}
KUBELET_VERSION = "v1.36.3"


class AddressPool:
    """Pod IPs of one node, handed out round-robin so a new Pod rarely reuses an old IP."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._in_use: set[str] = set()
        self._next = itertools.cycle(range(2, 255))
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            for _ in range(253):
                ip = f"{self.prefix}.{next(self._next)}"
                if ip not in self._in_use:
                    self._in_use.add(ip)
                    return ip
        raise RuntimeError(f"no free pod IP in {self.prefix}.0/24")

    def give_back(self, ip: str) -> None:
        with self._lock:
            self._in_use.discard(ip)


@dataclass
class TestbedNode:
    name: str
    index: int
    network: str
    """`127.N`: this node's addresses are 127.N.<index>.x."""
    zone: str
    pool: AddressPool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = AddressPool(f"{self.network}.{self.index}")

    @property
    def ip(self) -> str:
        return f"{self.network}.{self.index}.1"

    def manifest(self) -> JSON:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": self.zone,
                    "topology.kubernetes.io/region": "testbed",
                },
            },
            "spec": {},
        }

    def status(self) -> JSON:
        stamp = timestamp()

        def condition(kind: str, value: str, reason: str, message: str) -> JSON:
            return {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }

        return {
            "capacity": CAPACITY,
            "allocatable": CAPACITY,
            "addresses": [{"type": "InternalIP", "address": self.ip}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "redkube test bed (Pods run as local processes)",
                "containerRuntimeVersion": "testbed://1",
                "kernelVersion": os.uname().release,
                "machineID": self.name,
                "systemUUID": self.name,
                "bootID": self.name,
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition(
                    "Ready", "True", "KubeletReady", "test-bed node agent is posting ready status"
                ),
            ],
        }

    def register(self, api: ApiClient) -> None:
        """Create (or adopt) the Node, then post its status: idempotent."""
        try:
            api.create("/api/v1/nodes", self.manifest())
        except ApiError as error:
            if not error.conflict:
                raise
        self.post_status(api)

    def post_status(self, api: ApiClient) -> None:
        api.patch(f"/api/v1/nodes/{self.name}/status", {"status": self.status()})

    def renew_lease(self, api: ApiClient) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": timestamp(micro=True),
        }
        try:
            api.patch(path, {"spec": spec})
        except ApiError as error:
            if not error.not_found:
                raise
            node = api.get(f"/api/v1/nodes/{self.name}")
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.name,
                            "uid": node["metadata"]["uid"],
                        }
                    ],
                },
                "spec": spec,
            }
            api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)


def testbed_nodes(count: int, network: str) -> list[TestbedNode]:
    return [
        TestbedNode(f"node-{i}", i, network, ZONES[(i - 1) % len(ZONES)])
        for i in range(1, count + 1)
    ]
