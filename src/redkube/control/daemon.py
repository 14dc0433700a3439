"""The local supervisor: a detached process that runs the node processes and the loop until
``redkube down``. It is the local stand-in for the operator's Deployment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import traceback

from redkube.admin.connections import ClientPool
from redkube.control.metrics import LoopMetrics, MetricsServer
from redkube.control.reconciling import Reconciler
from redkube.control.renewing import CertificateRenewal
from redkube.control.rotating import PasswordRotation
from redkube.control.statuses import LoopStatus, Phase
from redkube.control.users import UserSync
from redkube.platform.local.layout import ClusterLayout, StateError, write_json
from redkube.platform.local.processes import LocalPlatform


def spawn_supervisor(layout: ClusterLayout) -> int:
    """Fork a detached supervisor (double fork, new session); return its pid."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        code = 1
        try:
            _detach_stdio(layout)
            os.write(write_end, str(os.getpid()).encode())
            os.close(write_end)
            run_supervisor(layout)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    return int(data)


def _detach_stdio(layout: ClusterLayout) -> None:
    log = os.open(layout.supervisor_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def run_supervisor(layout: ClusterLayout) -> None:
    layout.supervisor_pid_path.write_text(f"{os.getpid()}\n")
    try:
        asyncio.run(_supervise(layout))
    finally:
        layout.supervisor_pid_path.unlink(missing_ok=True)


class Metrics:
    """The supervisor's metrics endpoint on 127.0.0.1; a port that cannot be had is logged and
    the cluster goes on without metrics (``url`` says why)."""

    def __init__(self, metrics: LoopMetrics) -> None:
        self.server: MetricsServer | None = None
        self.metrics = metrics
        self.port = 0
        self.url = "not served yet"

    async def listen(self, port: int) -> None:
        if self.server is not None:
            await self.server.stop()
        self.server = MetricsServer(self.metrics)
        try:
            self.port = await self.server.start("127.0.0.1", port)
        except OSError as error:
            self.server, self.port = None, 0
            self.url = f"not served: 127.0.0.1:{port}: {error.strerror or error}"
            log(f"metrics {self.url}")
            return
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        log(f"metrics at {self.url}")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


def log(message: str) -> None:
    now = time.time()
    stamp = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    )
    print(f"{stamp} {message}", flush=True)


async def _supervise(layout: ClusterLayout) -> None:
    record = layout.load()
    credentials = layout.credentials()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reconciler: Reconciler | None = None

    def event(message: str) -> None:
        if reconciler is not None:
            reconciler.record(message)
        else:
            log(message)

    platform = LocalPlatform(layout, record, on_event=event)
    pool = ClientPool(
        credentials.current, tls=layout.client_tls(record.spec), username=credentials.user
    )
    last: list[LoopStatus] = []
    metrics = LoopMetrics()
    metrics.leader.set(1)  # the supervisor acts for its cluster, as the leading operator does
    serving = Metrics(metrics)
    await serving.listen(record.metrics_port)

    def report(status: LoopStatus) -> None:
        last[:] = [status]
        write_json(
            layout.status_path,
            {**status.to_json(), "pid": os.getpid(), "at": time.time(), "metrics": serving.url},
        )

    def reshape() -> None:
        """`redkube up` saved a new record (SIGHUP): new members join, the loop moves slots,
        applies live settings and restarts nodes on another server or settings one by one."""
        assert reconciler is not None
        try:
            updated = layout.load()
        except StateError as error:
            log(f"cannot read the new record: {error}")
            return
        before, server = reconciler.spec, platform.server
        platform.reload(updated)
        if (updated.spec.shards, updated.spec.replicas) != (before.shards, before.replicas):
            reconciler.record(
                f"new shape: {updated.spec.shards} shards x {updated.spec.replicas} replicas "
                f"(was {before.shards} x {before.replicas})"
            )
        if updated.spec.config != before.config:
            settings = ", ".join(f"{k} {v}" for k, v in updated.spec.config) or "none"
            reconciler.record(f"new settings: {settings}")
        if updated.server != server:
            reconciler.record(f"new server: {updated.server} (was {server})")
        if updated.metrics_port not in (0, serving.port):
            helpers.append(asyncio.create_task(serving.listen(updated.metrics_port)))
        reconciler.spec = updated.spec

    reconciler = Reconciler(record.spec, platform, pool, report, log, metrics=metrics)
    loop.add_signal_handler(signal.SIGHUP, reshape)
    log(f"supervising {record.spec.name}: {record.spec.shards} shards x {record.spec.replicas}")
    rotation = PasswordRotation(layout, platform, pool, reconciler.record)
    users = UserSync(layout, platform, pool, reconciler.record)
    helpers: list[asyncio.Task[None]] = [
        asyncio.create_task(rotation.run(stop), name="password rotation"),
        asyncio.create_task(users.run(stop), name="ACL users"),
    ]
    if record.spec.tls:
        renewal = CertificateRenewal(layout, platform, pool, reconciler.record)
        helpers.append(asyncio.create_task(renewal.run(stop), name="certificate renewal"))
    try:
        await reconciler.run(stop)
    finally:
        for helper in helpers:
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await helper
        await serving.stop()
        log("stopping nodes")
        with contextlib.suppress(Exception):
            await pool.close()
        await platform.stop_all()
        if last:
            stopped = LoopStatus(Phase.STOPPED, "stopped", (), 0, 0, None, last[0].events)
            write_json(layout.status_path, {**stopped.to_json(), "pid": None, "at": time.time()})
        log("stopped")
