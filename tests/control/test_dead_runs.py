"""The operator notices a cluster's run whose reconcile loop or Pod watch has ended while it was
not stopped (a unit test: the tasks are stand-ins), so the daemon can log it and start a new
run instead of leaving the status frozen."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redkube.kubernetes.clusters import parse
from redkube.operator import api_client, handlers
from redkube.platform.kubernetes.api import KubernetesApi

BODY = {
    "apiVersion": "redkube.io/v1alpha1",
    "kind": "RedisCluster",
    "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 1},
    "spec": {"shards": 3, "replicasPerShard": 1, "image": "valkey/valkey:9.1"},
}


def a_run(
    watch: Callable[[], Awaitable[None]], loop: Callable[[], Awaitable[None]]
) -> handlers.ClusterRun:
    """A run started with stand-ins for its Pod watch and its reconcile loop."""
    api_client.connect(cast(KubernetesApi, object()))  # never called: the tasks are stand-ins
    run = handlers.ClusterRun(parse(BODY), "pw", BODY, 1, {}, "rev")
    run.platform.watch = lambda stop: watch()  # type: ignore[method-assign]
    run._loop = loop  # type: ignore[method-assign]
    run.start()
    return run


async def forever() -> None:
    await asyncio.Event().wait()


async def fails() -> None:
    raise ValueError("Expecting value: line 1 column 1 (char 0)")


def test_a_run_whose_tasks_run_has_not_ended() -> None:
    async def check() -> None:
        run = a_run(forever, forever)
        await asyncio.sleep(0)
        assert run.ended() is None
        await run.close()

    asyncio.run(check())


def test_a_dead_watch_and_a_cancelled_loop_are_named() -> None:
    async def check() -> tuple[Any, Any, Any]:
        dead_watch = a_run(fails, forever)
        await asyncio.sleep(0.01)
        watch = dead_watch.ended()
        await dead_watch.close()
        run = a_run(forever, forever)
        await asyncio.sleep(0)
        run._tasks[1].cancel()
        await asyncio.sleep(0.01)
        loop = run.ended()
        run.stop.set()  # a stopped run's ended tasks are no news
        stopped = run.ended()
        await run.close()
        return watch, loop, stopped

    watch, loop, stopped = asyncio.run(check())
    assert watch == "the Pod watch ended: ValueError: Expecting value: line 1 column 1 (char 0)"
    assert loop == "the reconcile loop was cancelled"
    assert stopped is None


def test_a_finished_restore_is_done_and_one_that_raised_is_named() -> None:
    """A restore returns once Complete or Failed (its state says which): the run goes on. A
    restore that raised is news like a dead loop. (A finished restore taken for a dead run
    restarted the whole run every pass.)"""

    async def returns() -> None:
        return None

    async def check() -> tuple[Any, Any]:
        run = a_run(forever, forever)
        run._tasks.append(asyncio.create_task(returns(), name=handlers.RESTORE_TASK))
        await asyncio.sleep(0.01)
        finished = run.ended()
        await run.close()
        run = a_run(forever, forever)
        run._tasks.append(asyncio.create_task(fails(), name=handlers.RESTORE_TASK))
        await asyncio.sleep(0.01)
        raised = run.ended()
        await run.close()
        return finished, raised

    finished, raised = asyncio.run(check())
    assert finished is None
    assert raised == "the restore ended: ValueError: Expecting value: line 1 column 1 (char 0)"
