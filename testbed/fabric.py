"""The network real test-bed nodes live in: network namespaces this module creates, joined by a
bridge, so that no packet leaves them.

- `rk<id>-net`: the fabric, a bridge `br0` that every other end plugs into.
- `rk<id>-n<i>`: node i, with `eth0` at <prefix>.0.(10+i) on the fabric and its Pods'
  subnet <pods>.i.0/24 behind it (the node routes to the other nodes' Pod subnets).
- On the machine: one veth `rk<id>h` at <prefix>.0.254, plugged into the fabric, with a route to
  each node's Pod subnet. The control plane's apiserver serves there, the kubelets reach it, and
  tests on the machine reach Pod IPs; deleting the veth takes the routes with it.

Daemons run in a node with `nsenter --net=...` only: they keep the machine's mount namespace, so
that the volumes the kubelet mounts are the ones containerd sees.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field


class FabricError(RuntimeError):
    """An `ip` or `sysctl` command failed."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise FabricError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


@dataclass
class Fabric:
    nodes: int
    prefix: str = "10.251"
    pods: str = "10.244"  # node i's Pods get <pods>.i.0/24
    token: str = field(default_factory=lambda: secrets.token_hex(2))

    @property
    def namespace(self) -> str:
        return f"rk{self.token}-net"

    def node_namespace(self, index: int) -> str:
        return f"rk{self.token}-n{index}"

    def netns_path(self, index: int) -> str:
        return f"/run/netns/{self.node_namespace(index)}"

    @property
    def host_link(self) -> str:
        return f"rk{self.token}h"

    @property
    def host_ip(self) -> str:
        return f"{self.prefix}.0.254"

    def node_ip(self, index: int) -> str:
        return f"{self.prefix}.0.{10 + index}"

    def pod_subnet(self, index: int) -> str:
        return f"{self.pods}.{index}.0/24"

    @property
    def pod_network(self) -> str:
        return f"{self.pods}.0.0/16"

    def nsenter(self, index: int) -> list[str]:
        """The argv prefix that runs a command in node `index`'s network namespace."""
        return ["nsenter", f"--net={self.netns_path(index)}"]

    # --- lifecycle ----------------------------------------------------------------------

    def create(self) -> None:
        try:
            self._create()
        except BaseException:
            self.delete()
            raise

    def _create(self) -> None:
        fabric = self.namespace
        _run("ip", "netns", "add", fabric)
        _run("ip", "-n", fabric, "link", "set", "lo", "up")
        _run("ip", "-n", fabric, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", fabric, "link", "set", "br0", "up")
        # The machine's end.
        _run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "uplink",
             "netns", fabric)  # fmt: skip
        self._plug("uplink")
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_link)
        _run("ip", "link", "set", self.host_link, "up")
        for index in range(1, self.nodes + 1):
            self._add_node(index)
        for index in range(1, self.nodes + 1):
            _run("ip", "route", "add", self.pod_subnet(index), "via", self.node_ip(index))
            for other in range(1, self.nodes + 1):
                if other != index:
                    _run("ip", "-n", self.node_namespace(index), "route", "add",
                         self.pod_subnet(other), "via", self.node_ip(other))  # fmt: skip

    def _plug(self, link: str) -> None:
        _run("ip", "-n", self.namespace, "link", "set", link, "master", "br0")
        _run("ip", "-n", self.namespace, "link", "set", link, "up")

    def _add_node(self, index: int) -> None:
        node = self.node_namespace(index)
        _run("ip", "netns", "add", node)
        _run("ip", "-n", node, "link", "set", "lo", "up")
        _run("ip", "-n", self.namespace, "link", "add", f"n{index}", "type", "veth", "peer",
             "name", "eth0", "netns", node)  # fmt: skip
        self._plug(f"n{index}")
        _run("ip", "-n", node, "addr", "add", f"{self.node_ip(index)}/24", "dev", "eth0")
        _run("ip", "-n", node, "link", "set", "eth0", "up")
        for setting in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.route_localnet=1",
                        "net.bridge.bridge-nf-call-iptables=1"):  # fmt: skip
            _run(*self.nsenter(index), "sysctl", "-qw", setting)

    def cut(self, index: int) -> None:
        """Take node `index` off the fabric (a partition): its link goes down."""
        _run("ip", "-n", self.namespace, "link", "set", f"n{index}", "down")

    def mend(self, index: int) -> None:
        _run("ip", "-n", self.namespace, "link", "set", f"n{index}", "up")

    def delete(self) -> None:
        """Remove every namespace and link this fabric made (routes go with the veth)."""
        _run("ip", "link", "del", self.host_link, check=False)
        for index in range(1, self.nodes + 1):
            _run("ip", "netns", "del", self.node_namespace(index), check=False)
        _run("ip", "netns", "del", self.namespace, check=False)

    def leftovers(self) -> Sequence[str]:
        """Namespaces and links of this fabric that still exist (none after `delete`)."""
        namespaces = _run("ip", "netns", "list").stdout.split()
        links = _run("ip", "-o", "link", "show").stdout
        found = [n for n in namespaces if n.startswith(f"rk{self.token}-")]
        if f"{self.host_link}@" in links or f" {self.host_link}:" in links:
            found.append(self.host_link)
        return found
