"""The Kubernetes test bed shared by the whole test session (registered in tests/conftest.py)."""

from __future__ import annotations

import hashlib
import os
import re
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


NODES = 3


def pod_network(offset: int = 0) -> str:
    """A `127.N` network for test-bed pod IPs that no other test run or `make testbed-up` uses.

    Local-platform tests use 127.20-219 and `make testbed-up` 127.250.
    """
    return f"127.{230 + (os.getpid() + offset) % 20}"


@pytest.fixture(scope="session")
def control_plane(bindir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The control plane plus a node agent with 3 Nodes (zone-a, zone-b, zone-c)."""
    cp = ControlPlane(
        tmp_path_factory.mktemp("control-plane"), bindir, nodes=NODES, network=pod_network()
    )
    began = time.monotonic()
    with cp:
        print(f"\ncontrol plane started in {time.monotonic() - began:.1f}s (workdir {cp.workdir})")
        yield cp


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards.

    The name is `<prefix>-<test name, cut>-<hash>`; the prefix is `t`, or the test's
    `namespace_prefix` marker (the operator serves only namespaces starting with `op-`).
    """
    marker = request.node.get_closest_marker("namespace_prefix")
    prefix = marker.args[0] if marker else "t"
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    readable = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{prefix}-{readable}-{digest}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
