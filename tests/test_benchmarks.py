"""Every benchmark still loads: its imports from the tests and the test bed exist (a renamed
helper broke bench/full_restart.py once, unnoticed until it was run)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_the_benchmark_loads(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)  # runs its imports, not its main()
    finally:
        del sys.modules[spec.name]
    assert module.__doc__, f"{path.name} says what it measures"


RUNNABLE = [p for p in sorted(BENCH.glob("*.py")) if '__name__ == "__main__"' in p.read_text()]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_help_only_prints_the_usage(path: Path) -> None:
    """`--help` starts nothing (a benchmark without argparse once started a whole test bed)."""
    done = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:200]
