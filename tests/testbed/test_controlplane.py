"""The test-bed control plane is a working Kubernetes API with controllers and a scheduler."""

from __future__ import annotations

import base64
import json
import time
from functools import partial
from pathlib import Path

import pytest

from testbed import ControlPlane, ControlPlaneError
from testbed.processes import pid_alive
from tests.testbed.kube import eventually as poll_until

KUBE_VERSION = "v1.36.3"

STATEFULSET = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: default
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      nodeSelector: {disktype: ssd}
      containers:
        - name: web
          image: registry.k8s.io/pause:3.10
"""


eventually = partial(poll_until, timeout=60, interval=0.5)


def test_server_version(control_plane: ControlPlane) -> None:
    reply = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert reply["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert reply["clientVersion"]["gitVersion"] == KUBE_VERSION


def test_readyz(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_default_namespaces_exist(control_plane: ControlPlane) -> None:
    names = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)


def test_deleted_namespace_goes_away(control_plane: ControlPlane) -> None:
    control_plane.kubectl("create", "namespace", "x")
    control_plane.kubectl("create", "configmap", "c", "-n", "x", "--from-literal=k=v")
    control_plane.kubectl("delete", "namespace", "x", "--wait=false")

    def gone() -> bool:
        done = control_plane.kubectl("get", "namespace", "x", check=False)
        return done.returncode != 0 and "NotFound" in done.stderr

    eventually(gone, "namespace x is finalized by the namespace controller")


def test_service_account_token(control_plane: ControlPlane) -> None:
    control_plane.kubectl("create", "serviceaccount", "sa", "-n", "default")
    token = control_plane.kubectl("create", "token", "sa", "-n", "default").stdout.strip()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == "system:serviceaccount:default:sa"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"


def test_statefulset_pods_are_created_and_unschedulable(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(STATEFULSET)
    control_plane.kubectl("apply", "-f", str(manifest))

    def pods() -> dict[str, dict[str, object]]:
        listed = control_plane.kubectl(
            "get", "pods", "-n", "default", "-l", "app=web", "-o", "json"
        )
        return {p["metadata"]["name"]: p for p in json.loads(listed.stdout)["items"]}

    def unschedulable(pod: dict[str, object]) -> bool:
        status = pod.get("status")
        assert isinstance(status, dict)
        conditions = status.get("conditions") or []
        return status.get("phase") == "Pending" and any(
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
            for c in conditions
        )

    eventually(lambda: set(pods()) == {"web-0", "web-1"}, "the StatefulSet controller makes 2 Pods")
    eventually(
        lambda: all(unschedulable(p) for p in pods().values()),
        "the scheduler marks both Pods Unschedulable (no node has disktype=ssd)",
    )

    def failed_scheduling() -> bool:
        events = control_plane.kubectl(
            "get", "events", "-n", "default",
            "--field-selector=reason=FailedScheduling,involvedObject.name=web-0", "-o", "json",
        )  # fmt: skip
        return bool(json.loads(events.stdout)["items"])

    eventually(failed_scheduling, "a FailedScheduling event for web-0")


def test_stop_leaves_no_process(bindir: Path, tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path / "cp", bindir)
    with cp:
        pids = cp.pids
        assert set(pids) == {"etcd", "kube-apiserver", "controller-manager", "scheduler"}
        assert not cp.kubectl("get", "nodes", "-o", "name").stdout.strip()
        assert all(pid_alive(pid) for pid in pids.values())
        print(f"\nsecond control plane started in {cp.start_seconds:.1f}s")
        began = time.monotonic()
    print(f"stopped in {time.monotonic() - began:.1f}s")
    alive = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not alive, f"still running after stop(): {alive}"
    cp.stop()  # a second stop is harmless


def test_failed_start_names_the_component_and_stops_the_rest(bindir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    for binary in bindir.iterdir():
        (fake / binary.name).symlink_to(binary)
    (fake / "kube-apiserver").unlink()
    (fake / "kube-apiserver").write_text(
        "#!/bin/sh\necho 'flag provided but not defined'\nexit 3\n"
    )
    (fake / "kube-apiserver").chmod(0o755)
    cp = ControlPlane(tmp_path / "cp", fake)

    with pytest.raises(ControlPlaneError) as failed:
        cp.start()

    message = str(failed.value)
    assert "kube-apiserver exited with code 3" in message
    assert "flag provided but not defined" in message  # the log's last lines
    assert set(cp.pids) == {"etcd", "kube-apiserver"}
    assert not any(pid_alive(pid) for pid in cp.pids.values())
