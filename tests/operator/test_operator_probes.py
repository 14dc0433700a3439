"""The operator's /healthz and /readyz (the Deployment's probes), for the leader, a standby, and
an operator that cannot reach the Kubernetes API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from testbed import ControlPlane
from testbed.processes import free_ports
from tests.operator.conftest import start_operator, stop_operator
from tests.testbed.kube import eventually


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def test_leader_and_standby_are_live_and_ready(control_plane: ControlPlane, tmp_path: Path) -> None:
    leader_port, standby_port = free_ports(2)
    lease = "redkube-probes"
    leader = start_operator(
        control_plane, tmp_path / "leader.log", "probes-*", f"--health-port={leader_port}",
        lease=lease,
    )  # fmt: skip
    try:
        eventually(lambda: "became leader" in (tmp_path / "leader.log").read_text(), "a leader")
        standby = start_operator(
            control_plane, tmp_path / "standby.log", "probes-*", f"--health-port={standby_port}",
            lease=lease,
        )  # fmt: skip
        try:
            for port in (leader_port, standby_port):
                eventually(lambda: probe(port, "/healthz")[0] == 200, f"live on {port}")  # noqa: B023
                eventually(lambda: probe(port, "/readyz") == (200, "ok\n"), f"ready on {port}")  # noqa: B023
            assert "became leader" not in (tmp_path / "standby.log").read_text()
        finally:
            stop_operator(standby)
    finally:
        stop_operator(leader)


def test_an_operator_without_the_api_is_live_but_not_ready(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = json.loads(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "kubeconfig"
    dead.write_text(json.dumps(config))
    (port,) = free_ports(1)
    operator = start_operator(
        control_plane, tmp_path / "operator.log", "probes-*", f"--health-port={port}",
        f"--kubeconfig={dead}", lease="redkube-probes-dead",
    )  # fmt: skip
    try:
        eventually(lambda: probe(port, "/healthz")[0] == 200, "live")
        status, said = probe(port, "/readyz")
        assert status == 503 and "has not answered yet" in said, (status, said)
    finally:
        stop_operator(operator)
