"""The operator writes a RedisCluster's status one write at a time, the newest last."""

from __future__ import annotations

import asyncio

from redkube.operator.status_writing import JSON, LatestStatus


def test_a_slow_write_is_never_followed_by_an_older_status() -> None:
    written: list[str] = []
    first_write_may_end = asyncio.Event()

    async def write(status: JSON) -> bool:
        if not written:  # the first write waits, as one renewing its token after a 401
            await first_write_may_end.wait()
        written.append(status["message"])
        return True

    async def scenario() -> None:
        statuses = LatestStatus(write)
        statuses.offer({"message": "syncing"})
        await asyncio.sleep(0)
        statuses.offer({"message": "healing"})
        statuses.offer({"message": "ready"})  # replaces "healing", still waiting
        first_write_may_end.set()
        await statuses.finish(5)

    asyncio.run(scenario())
    assert written == ["syncing", "ready"]


def test_a_write_that_raised_is_flagged_so_the_status_is_offered_again() -> None:
    answers: list[bool | Exception] = [TimeoutError("no reply"), True]

    async def write(status: JSON) -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def scenario() -> tuple[bool, bool]:
        statuses = LatestStatus(write)
        statuses.offer({"message": "ready"})
        await statuses.finish(5)
        after_failure = statuses.failed
        statuses.offer({"message": "ready"})
        await statuses.finish(5)
        return after_failure, statuses.failed

    assert asyncio.run(scenario()) == (True, False)
