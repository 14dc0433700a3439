"""`python -m testbed up`'s errors (tests/realnodes/test_testbed_up.py starts and stops one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.testbed.fixtures import ROOT


def run_testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )


def test_up_without_binaries_is_one_clear_error(tmp_path: Path) -> None:
    done = run_testbed(
        "up", f"--bindir={tmp_path}", f"--node-bindir={tmp_path}", f"--images={tmp_path}/index",
        f"--workdir={tmp_path / 'bed'}",
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stdout.strip()
        == f"error: no Kubernetes binaries in {tmp_path} (run testbed/build-binaries.sh)"
    )
    assert "Traceback" not in done.stderr
