"""Real Kubernetes nodes for the test bed: per node a kubelet, containerd (with Debian's runc and
the CNI bridge plugin) and kube-proxy, each in the node's network namespace (see `fabric`),
joined to a `ControlPlane` that serves on the fabric.

Images come from `testbed/build-images.sh` (its index: archives and names), imported into each
node's containerd; nothing is pulled. Binaries: kubelet and kube-proxy from
`testbed/build-binaries.sh`, containerd, ctr, its shim and CoreDNS from
`testbed/build-node-binaries.sh`.

Everything a node writes is under its directory, but for what a kubelet keeps on the machine
whatever its flags (`/var/log/containers` links, the device-plugin socket): `stop` removes ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from testbed.certificates import KeyPair, issue
from testbed.controlplane import ControlPlane
from testbed.fabric import Fabric
from testbed.kubeconfigs import write_kubeconfig
from testbed.processes import Component, ControlPlaneError

CLUSTER_DNS = "10.0.0.10"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10.1"
NODE_READY_TIMEOUT = 90.0
STOP_GRACE = 10.0
ZONES = ("zone-a", "zone-b", "zone-c")
KUBELET_DIR = Path("/var/lib/kubelet")
CNI_RESULTS = Path("/var/lib/cni/results")


def _containerd_config(default: str, state: Path, sockets: Path, cni: Path) -> str:
    """`containerd config default`, pointed at the node's own directories."""

    def top(text: str, key: str, value: str) -> str:
        return re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)

    def inside(text: str, section: str, key: str, value: str) -> str:
        start = text.index(f"[{section}]\n")
        found = re.compile(rf"^(\s*){re.escape(key)} = .*$", re.M).search(text, start)
        if found is None:
            raise ControlPlaneError(f"containerd config: no {key} in [{section}]")
        return f"{text[: found.start()]}{found.group(1)}{key} = {value}{text[found.end() :]}"

    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    runc = f"{runtime}.containerd.runtimes.runc.options"
    text = top(default, "root", f"'{state}/root'")
    text = top(text, "state", f"'{state}/state'")
    text = top(text, "imports", "[]")
    for section, key, value in (
        ("plugins.'io.containerd.cri.v1.images'.pinned_images", "sandbox", f"'{SANDBOX_IMAGE}'"),
        (runtime, "netns_mounts_under_state_dir", "true"),
        # No CAP_SYS_RESOURCE here: runc may not lower the sandbox's oom_score_adj.
        (runtime, "restrict_oom_score_adj", "true"),
        (runc, "BinaryName", "'/usr/sbin/runc'"),
        (runc, "Root", f"'{state}/runc'"),
        (runc, "SystemdCgroup", "false"),
        (f"{runtime}.cni", "bin_dirs", "['/usr/lib/cni']"),
        (f"{runtime}.cni", "conf_dir", f"'{cni}'"),
        ("plugins.'io.containerd.internal.v1.opt'", "path", f"'{state}/opt'"),
        ("plugins.'io.containerd.nri.v1.nri'", "disable", "true"),
        ("plugins.'io.containerd.nri.v1.nri'", "socket_path", f"'{state}/nri.sock'"),
        ("plugins.'io.containerd.server.v1.grpc'", "address", f"'{sockets}/containerd.sock'"),
        ("plugins.'io.containerd.server.v1.ttrpc'", "address", f"'{sockets}/ttrpc.sock'"),
        ("plugins.'io.containerd.shim.v1.manager'", "socket_dir", f"'{sockets}/s'"),
        ("plugins.'io.containerd.image-verifier.v1.bindir'", "bin_dir", f"'{state}/verifier'"),
    ):
        text = inside(text, section, key, value)
    return text


def remove_machine_leftovers() -> None:
    """After the last node stopped: what kubelets and libcni keep on the machine whatever their
    flags (the device-plugin socket, the CNI result cache), removed when nothing else is there."""
    (KUBELET_DIR / "device-plugins" / "kubelet.sock").unlink(missing_ok=True)
    for directory in (KUBELET_DIR / "device-plugins", KUBELET_DIR, CNI_RESULTS, CNI_RESULTS.parent):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


def start_nodes(nodes: Sequence[RealNode], meanwhile: Callable[[], None] | None = None) -> None:
    """Start the nodes and return once all are Ready. Daemons are started from this thread
    (they get SIGTERM when the thread that started them ends); the image imports, plain `ctr`
    runs, go in parallel, with `meanwhile` (the control plane's start: containerd and the
    imports do not need it, the kubelets do) on this thread."""
    for node in nodes:
        node._start_runtime()
    with ThreadPoolExecutor(len(nodes)) as pool:
        imports = [pool.submit(RealNode._import_images, node) for node in nodes]
        if meanwhile is not None:
            meanwhile()
        for done in imports:
            done.result()
    kubelets = [node._start_agents() for node in nodes]
    for node, kubelet in zip(nodes, kubelets, strict=True):
        kubelet.wait_until(node._ready, "a Ready Node", NODE_READY_TIMEOUT)


@dataclass
class RealNode:
    """One node: `start` returns once the Node is Ready; `stop` leaves nothing of it."""

    index: int
    cp: ControlPlane
    fabric: Fabric
    node_bins: Path
    images: Path  # build-images.sh's index
    components: list[Component] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def zone(self) -> str:
        return ZONES[(self.index - 1) % len(ZONES)]

    @property
    def ip(self) -> str:
        return self.fabric.node_ip(self.index)

    @property
    def dir(self) -> Path:
        return self.cp.workdir / "nodes" / self.name

    @property
    def run_dir(self) -> Path:
        """containerd's sockets and the kubelet's root dir: short paths (a shim's socket dir may
        not exceed 42 characters, a unix socket's path 107)."""
        return Path(f"/run/rk{self.fabric.token}-n{self.index}")

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def cgroup_root(self) -> str:
        return f"/rk{self.fabric.token}-{self.name}"

    def _spawn(self, name: str, argv: list[str]) -> Component:
        path = f"PATH={self.node_bins}:/usr/sbin:/usr/bin:/sbin:/bin"  # our runc shim first
        component = Component(
            f"{self.name}/{name}",
            ["env", path, *self.fabric.nsenter(self.index), *argv],
            self.dir / "logs" / f"{name}.log",
        )
        self.components.append(component)
        component.start()
        return component

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.node_bins / "ctr"), "-a", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    # --- start --------------------------------------------------------------------------

    def start(self) -> None:
        start_nodes([self])

    def _start_runtime(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._start_containerd()

    def _start_agents(self) -> Component:
        self._write_cni()
        kubelet = self._start_kubelet()
        self._start_kube_proxy()
        return kubelet

    def _client(self, name: str, cn: str, organisation: str | None) -> Path:
        assert self.cp.certificates is not None
        pki = self.dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        pair = issue(pki, self.cp.certificates.ca, name, cn, o=organisation, client=True)
        return write_kubeconfig(
            self.dir / f"{name}.kubeconfig", server=self.cp.apiserver_url,
            ca=self.cp.certificates.ca.cert, cert=pair.cert, key=pair.key, user=name,
        )  # fmt: skip

    def _start_containerd(self) -> None:
        state = self.dir / "containerd"
        state.mkdir(parents=True, exist_ok=True)
        default = subprocess.run(
            [str(self.node_bins / "containerd"), "config", "default"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        config = state / "config.toml"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(
            _containerd_config(default, state, self.run_dir, self.dir / "cni" / "net.d")
        )
        containerd = self._spawn("containerd", [str(self.node_bins / "containerd"),
                                                "--config", str(config)])  # fmt: skip
        containerd.wait_until(
            lambda: self.socket.exists() and self.ctr("version").returncode == 0,
            "serving",
            30,
        )

    def _import_images(self) -> None:
        for line in self.images.read_text().splitlines():
            archive, first, *others = line.split()
            done = self.ctr("images", "import", "--no-unpack", archive)
            if done.returncode != 0:
                raise ControlPlaneError(f"{self.name}: importing {archive}: {done.stderr}")
            for other in others:
                self.ctr("images", "tag", "--force", first, other)

    def _write_cni(self) -> None:
        conf = self.dir / "cni" / "net.d"
        conf.mkdir(parents=True, exist_ok=True)
        network = {
            "cniVersion": "1.0.0",
            "name": "testbed",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,  # Pod to Pod keeps its address; nothing goes outside
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.fabric.pod_subnet(self.index)}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf / "10-testbed.conflist").write_text(json.dumps(network, indent=2))

    def _make_cgroups(self) -> None:
        """The kubelet wants its cgroupRoot in every hierarchy; a new cpuset starts with no CPUs
        or memory nodes, so it gets its parent's."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / self.cgroup_root.lstrip("/")
            with contextlib.suppress(OSError):
                top.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists():
                    (top / name).write_text((hierarchy / name).read_text())

    def _start_kubelet(self) -> Component:
        assert self.cp.certificates is not None
        self._make_cgroups()
        kubeconfig = self._client("kubelet", f"system:node:{self.name}", "system:nodes")
        serving: KeyPair = issue(
            self.dir / "pki", self.cp.certificates.ca, "kubelet-serving",
            f"system:node:{self.name}", ips=(self.ip,), dns=(self.name,),
        )  # fmt: skip
        resolv = self.dir / "resolv.conf"
        resolv.write_text(f"nameserver {CLUSTER_DNS}\nsearch cluster.local\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "cgroupRoot": self.cgroup_root,  # each kubelet its own, or they reap each other's
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.certificates.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "clusterDomain": "cluster.local",
            "clusterDNS": [CLUSTER_DNS],
            "resolvConf": str(resolv),
            "registerNode": True,
            "rotateCertificates": False,
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "imageGCHighThresholdPercent": 100,  # nothing could pull a deleted image back
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "maxPods": 60,
            "podLogsDir": str(self.dir / "pod-logs"),
        }
        path = self.dir / "kubelet-config.json"
        path.write_text(json.dumps(config, indent=2))
        return self._spawn("kubelet", [
            str(self.cp.bindir / "kubelet"), f"--config={path}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.run_dir / 'kubelet'}", f"--cert-dir={self.dir / 'pki'}",
            f"--hostname-override={self.name}", f"--node-ip={self.ip}",
            f"--node-labels=topology.kubernetes.io/zone={self.zone}", "--v=1",
        ])  # fmt: skip

    def _start_kube_proxy(self) -> None:
        kubeconfig = self._client("kube-proxy", "system:kube-proxy", None)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clusterCIDR": self.fabric.pod_network,
            "hostnameOverride": self.name,
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # 0: leave the machine's conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        path = self.dir / "kube-proxy-config.json"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [str(self.cp.bindir / "kube-proxy"), f"--config={path}",
                                   "--v=1"])  # fmt: skip

    def _ready(self) -> bool:
        done = self.cp.kubectl(
            "get", "node", self.name, "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
        )  # fmt: skip
        return done.stdout.strip() == "True"

    # --- stop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """The kubelet first (it would restart what dies), then every container process,
        containerd and kube-proxy; then the node's mounts, cgroups and log links."""
        for component in self.components:
            if component.name.endswith("/kubelet"):
                component.stop(STOP_GRACE)
        listed = self.ctr("containers", "ls", "-q") if self.socket.exists() else None
        containers = listed.stdout.split() if listed else []
        self._kill_containers()
        for component in reversed(self.components):
            component.stop(STOP_GRACE)
        self._unmount()
        self._remove_cgroups()
        self._remove_log_links()
        self._remove_cni_results(containers)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    @staticmethod
    def _remove_cni_results(containers: list[str]) -> None:
        """libcni caches each sandbox's result on the machine whatever the config."""
        if not CNI_RESULTS.is_dir():
            return
        for cached in CNI_RESULTS.iterdir():
            if any(container in cached.name for container in containers):
                cached.unlink(missing_ok=True)

    def _container_pids(self) -> list[int]:
        """Processes in the node's cgroups, and its containerd's shims."""
        found: list[int] = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                shim = b"containerd-shim" in cmdline and str(self.socket).encode() in cmdline
                if shim or f":{self.cgroup_root}/" in (proc / "cgroup").read_text():
                    found.append(int(proc.name))
        return found

    def _kill_containers(self) -> None:
        for _ in range(50):  # bounded: a container that forks while being killed
            pids = self._container_pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _unmount(self) -> None:
        roots = (f"{self.dir}/", f"{self.run_dir}/")
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(roots)
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)

    def _remove_cgroups(self) -> None:
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / self.cgroup_root.lstrip("/")
            if not top.is_dir():
                continue
            for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if directory.is_dir():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def _remove_log_links(self) -> None:
        links = Path("/var/log/containers")
        if not links.is_dir():
            return
        for link in links.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(self.dir) in os.readlink(link):
                    link.unlink()

    def leftovers(self) -> list[str]:
        """What of this node is still on the machine (nothing after `stop`)."""
        found = [f"process {pid}" for pid in self._container_pids()]
        found += [f"{c.name} running" for c in self.components if c.running()]
        mountinfo = Path("/proc/self/mountinfo").read_text()
        under = [
            mount
            for root in (self.dir, self.run_dir)
            for mount in re.findall(rf" ({re.escape(str(root))}/\S*) ", mountinfo)
        ]
        found += [f"mount {m}" for m in under]
        found += [str(self.run_dir)] if self.run_dir.exists() else []
        found += [
            f"cgroup {h / self.cgroup_root.lstrip('/')}"
            for h in Path("/sys/fs/cgroup").iterdir()
            if (h / self.cgroup_root.lstrip("/")).exists()
        ]
        return found
