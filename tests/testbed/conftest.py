"""A real Kubernetes control plane shared by the whole test session."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkube.testbed import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "testbed" / "build-binaries.sh"


@pytest.fixture(scope="session")
def bindir() -> Path:
    """The control-plane binaries; a cold build (no cache) takes ~6 minutes and needs Go."""
    done = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    assert lines, f"{BUILD_SCRIPT} printed nothing"
    return Path(lines[-1])


@pytest.fixture(scope="session")
def control_plane(bindir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"), bindir)
    began = time.monotonic()
    with cp:
        print(f"\ncontrol plane started in {time.monotonic() - began:.1f}s (workdir {cp.workdir})")
        yield cp
