"""`python -m redkube.testbed up|status|down`, what `make testbed-up`/`testbed-down` run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from redkube.testbed.processes import pid_alive
from tests.testbed.fixtures import pod_network


def run_testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redkube.testbed", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_up_status_down(bindir: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "bed"
    options = [f"--workdir={workdir}", "--nodes=1", f"--network={pod_network(offset=2)}"]
    assert run_testbed("status", *options).returncode == 3

    up = run_testbed("up", f"--bindir={bindir}", *options)
    assert up.returncode == 0, up.stdout + up.stderr
    kubeconfig = workdir / "cluster" / "kubeconfigs" / "admin.kubeconfig"
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    pid = int((workdir / "testbed.pid").read_text())
    try:
        nodes = subprocess.run(
            [str(bindir / "kubectl"), f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "name"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()  # fmt: skip
        assert nodes == ["node/node-1"]
        again = run_testbed("up", f"--bindir={bindir}", *options)
        assert again.returncode == 0
        assert "already running" in again.stdout
        assert run_testbed("status", *options).returncode == 0
    finally:
        down = run_testbed("down", *options)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pid_alive(pid)
    assert run_testbed("status", *options).returncode == 3


def test_up_without_binaries_is_one_clear_error(tmp_path: Path) -> None:
    done = run_testbed("up", f"--bindir={tmp_path}", f"--workdir={tmp_path / 'bed'}")
    assert done.returncode == 1
    assert (
        done.stdout.strip()
        == f"error: no Kubernetes binaries in {tmp_path} (run testbed/build-binaries.sh)"
    )
    assert "Traceback" not in done.stderr
