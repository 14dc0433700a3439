"""The operator, run as its own process against the test bed, with the CRD installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkube.testbed import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "crd.yaml"
NAMESPACES = "op-*"
"""The operator serves these only (a kopf glob): other tests' RedisClusters stay untouched."""


def start_operator(cp: ControlPlane, log: Path, namespaces: str) -> subprocess.Popen[bytes]:
    """`python -m redkube.operator` for the namespaces matching `namespaces` (a kopf glob)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "redkube.operator", f"--kubeconfig={cp.kubeconfig}",
             f"--namespace={namespaces}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Yields the operator's log file; the operator is stopped (SIGTERM) afterwards."""
    control_plane.kubectl("apply", "-f", str(CRD))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/redisclusters.redkube.io", "--timeout=60s"
    )
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = start_operator(control_plane, log, NAMESPACES)
    try:
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
