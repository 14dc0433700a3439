"""The reconcile loop outlives any one pass: a pass that raises or hangs is reported and retried,
never the silent end of the loop (a unit test: the platform and the passes are stand-ins)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from redkube.admin.connections import ClientPool
from redkube.control import reconciling
from redkube.control.reconciling import Reconciler
from redkube.model.actions import Step
from redkube.model.members import Member
from redkube.model.specs import ClusterSpec


class StillPlatform:
    starts_members = True

    def members(self) -> Sequence[Member]:
        return ()

    async def start(self, names: Sequence[str]) -> None:
        return None

    async def wait_for_change(self, timeout: float) -> None:
        await asyncio.sleep(0)


class Flaky(Reconciler):
    """Its first pass fails as ``first`` says; its second stops the loop."""

    def __init__(self, first: str, stop: asyncio.Event, log: list[str]) -> None:
        super().__init__(ClusterSpec("demo", 1, 0), StillPlatform(), ClientPool(None),
                         lambda status: None, log.append)  # fmt: skip
        self.first, self.stop, self.passes = first, stop, 0

    async def run_once(self) -> Step:
        self.passes += 1
        if self.passes == 1 and self.first == "raise":
            raise KeyError("no such node")
        if self.passes == 1 and self.first == "hang":
            await asyncio.sleep(3600)
        self.stop.set()
        return None


@pytest.mark.parametrize("first", ["raise", "hang"])
def test_a_failed_or_stuck_pass_is_reported_and_the_loop_goes_on(
    first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciling, "PASS_TIMEOUT_S", 0.2)
    log: list[str] = []

    async def main() -> int:
        stop = asyncio.Event()
        loop = Flaky(first, stop, log)
        await asyncio.wait_for(loop.run(stop), 10)
        return loop.passes

    assert asyncio.run(main()) == 2
    expected = "took too long" if first == "hang" else "failed (KeyError"
    assert any(line.startswith("failed: a pass") and expected in line for line in log), log
