"""`python -m testbed up|down|status`: a test-bed cluster for a person to use.

up      start a control plane and its real nodes (kubelet, containerd, kube-proxy in network
        namespaces; CoreDNS and local-path-provisioner; needs root) in the background (a fresh
        cluster each time), wait until its Nodes are Ready, print the kubeconfig path and how
        to use it
down    stop it: every component and every Pod; no process, mount, cgroup, network namespace
        or iptables rule is left behind
status  say whether it runs, and where its kubeconfig is
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.fabric import Fabric
from testbed.processes import ControlPlaneError, pid_alive
from testbed.realcluster import RealCluster

ROOT = Path(__file__).resolve().parents[1]
# Real nodes' addresses: apart from the test session's (10.251/10.244) and the benchmark's.
REAL_FABRIC, REAL_PODS = "10.250", "10.247"

UP_TIMEOUT = 180.0
DOWN_TIMEOUT = 90.0


def default_workdir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "redkube" / "testbed"


class Paths:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pid = workdir / "testbed.pid"
        self.ready = workdir / "ready"
        self.log = workdir / "testbed.log"
        self.cluster = workdir / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.cluster / "kubeconfigs" / "admin.kubeconfig"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Parts:
    """What the cluster is made of: testbed/build-binaries.sh's directory (the control plane,
    kubelet, kube-proxy), testbed/build-node-binaries.sh's (containerd, CoreDNS) and
    testbed/build-images.sh's index."""

    bindir: Path
    node_bins: Path
    images: Path


def up(paths: Paths, parts: Parts, nodes: int) -> int:
    pid = paths.running_pid()
    if pid is not None:
        print(f"test bed already running (pid {pid})")
        print(f"export KUBECONFIG={paths.kubeconfig}")
        return 0
    if not (parts.bindir / "kube-apiserver").is_file():
        print(f"error: no Kubernetes binaries in {parts.bindir} (run testbed/build-binaries.sh)")
        return 1
    if os.geteuid() != 0:
        print("error: real nodes need root (network namespaces, cgroups, mounts)")
        return 1
    if not parts.images.is_file():
        print(f"error: no image index at {parts.images} (make testbed-images)")
        return 1
    subprocess.run(["rm", "-rf", str(paths.workdir)], check=True)
    paths.workdir.mkdir(parents=True)
    argv = [sys.executable, "-m", "testbed", "serve", f"--workdir={paths.workdir}"]
    argv += [f"--bindir={parts.bindir}", f"--node-bindir={parts.node_bins}"]
    argv += [f"--images={parts.images}", f"--nodes={nodes}"]
    with paths.log.open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ROOT,  # where `testbed` is importable from
        )  # fmt: skip
    paths.pid.write_text(str(process.pid))
    began = time.monotonic()
    print(f"starting etcd, kube-apiserver, controller-manager, scheduler and {nodes} nodes ...")
    while not paths.ready.exists():
        if process.poll() is not None or time.monotonic() - began > UP_TIMEOUT:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            print(f"error: the test bed did not start; last lines of {paths.log}:")
            print(_tail(paths.log))
            return 1
        time.sleep(0.2)
    print(f"test bed ready in {time.monotonic() - began:.1f}s: {nodes} nodes")
    print(f"export KUBECONFIG={paths.kubeconfig}")
    print("then: kubectl get nodes; kubectl exec -it <pod> -- redis-cli; kubectl logs <pod>;")
    print(
        f"kubectl port-forward <pod> 6379; Pod IPs ({REAL_PODS}.<node>.0/24) are routed from "
        "this machine; images are preloaded (imagePullPolicy: Never or IfNotPresent)"
    )
    print("stop it with: make testbed-down")
    return 0


def down(paths: Paths) -> int:
    pid = paths.running_pid()
    if pid is None:
        print("test bed not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            print(f"error: the test bed did not stop in {DOWN_TIMEOUT:g}s; killed pid {pid}")
            return 1
        time.sleep(0.2)
    paths.pid.unlink(missing_ok=True)
    paths.ready.unlink(missing_ok=True)
    print("test bed stopped")
    return 0


def status(paths: Paths) -> int:
    pid = paths.running_pid()
    if pid is None or not paths.ready.exists():
        print("test bed not running")
        return 3
    print(f"test bed running (pid {pid})")
    print(f"export KUBECONFIG={paths.kubeconfig}")
    return 0


def serve(paths: Paths, parts: Parts, nodes: int) -> int:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fabric = Fabric(nodes, prefix=REAL_FABRIC, pods=REAL_PODS)
    try:
        cluster = RealCluster.start(
            paths.cluster, parts.bindir, parts.node_bins, parts.images, fabric
        )
    except ControlPlaneError as error:
        print(f"error: {error}", flush=True)
        return 1
    kubeconfig = cluster.cp.kubeconfig
    print(f"ready; kubeconfig {kubeconfig}", flush=True)
    paths.ready.write_text(str(kubeconfig))
    try:
        while not stopping:
            time.sleep(0.5)
    finally:
        cluster.stop()
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "serve"))
    parser.add_argument("--workdir", type=Path, default=default_workdir())
    parser.add_argument("--bindir", type=Path, default=None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--node-bindir", type=Path, help="testbed/build-node-binaries.sh's")
    parser.add_argument("--images", type=Path, help="testbed/build-images.sh's index")
    args = parser.parse_args(argv)
    paths = Paths(args.workdir.resolve())
    if args.command in ("up", "serve"):
        if args.bindir is None or args.node_bindir is None or args.images is None:
            parser.error(
                "--bindir, --node-bindir and --images are required (the last lines printed by "
                "testbed/build-binaries.sh, build-node-binaries.sh and build-images.sh)"
            )
        parts = Parts(args.bindir.resolve(), args.node_bindir.resolve(), args.images.resolve())
        if args.command == "up":
            return up(paths, parts, args.nodes)
        return serve(paths, parts, args.nodes)
    if args.command == "down":
        return down(paths)
    return status(paths)


if __name__ == "__main__":
    sys.exit(main())
