"""Stopping real nodes and their fabric leaves nothing on the machine: no process, mount,
cgroup, network namespace, link, route or iptables rule of theirs (its own small cluster: one
node, a Pod with a volume and a claim on it)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from testbed import ControlPlane, localpath
from testbed.fabric import Fabric
from testbed.realnodes import RealNode, remove_machine_leftovers
from tests.testbed.fixtures import IMAGES, built, missing

POD = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: held}
spec:
  securityContext: {runAsUser: 999, fsGroup: 999}
  containers:
  - {name: kv, image: "redis:7.0", imagePullPolicy: IfNotPresent,
     args: ["--protected-mode", "no"],
     volumeMounts: [{name: data, mountPath: /data}, {name: scratch, mountPath: /scratch}]}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
  - {name: scratch, emptyDir: {}}
"""


def machine_state() -> tuple[str, str]:
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=False)
    rules = [line for line in iptables.stdout.splitlines() if not line.startswith("#")]
    return "\n".join(rules), routes.stdout


@pytest.mark.timeout(300)
def test_stopping_a_real_node_and_its_fabric_leaves_nothing(tmp_path: Path) -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)
    before = machine_state()
    bindir, node_bins = built("build-binaries.sh"), built("build-node-binaries.sh")
    fabric = Fabric(1, prefix="10.253", pods="10.245")  # beside the session's real cluster
    fabric.create()
    cp = ControlPlane(tmp_path / "cp", bindir, host=fabric.host_ip)
    node = RealNode(1, cp, fabric, node_bins, IMAGES)
    try:
        cp.start()
        node.start()
        localpath.install(cp, {node.name: tmp_path / "volumes" / node.name})
        cp.kubectl("apply", "-f", "-", input=POD)
        cp.kubectl("wait", "--for=condition=Ready", "pod/held", "--timeout=120s", timeout=150)
        assert node.leftovers(), "a running node has processes, mounts and cgroups"
    finally:
        node.stop()
        remove_machine_leftovers()
        cp.stop()
        fabric.delete()
    assert node.leftovers() == []
    assert fabric.leftovers() == []
    assert f"{tmp_path}/" not in Path("/proc/self/mountinfo").read_text()
    assert not any(Path("/run").glob(f"rk{fabric.token}-*"))
    for _ in range(20):  # the kernel drops a deleted link's routes a moment later
        if machine_state() == before:
            break
        time.sleep(0.1)
    assert machine_state() == before
