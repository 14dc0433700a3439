"""The local-platform commands: up, status, down, kill, logs, list."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from redkube.admin.connections import ClientPool
from redkube.admin.observing import observe
from redkube.cli import rendering
from redkube.cli.exits import ExitStatus, UserError
from redkube.control.daemon import spawn_supervisor
from redkube.control.statuses import LoopStatus, Phase
from redkube.model.members import Member, MemberState, cluster_of
from redkube.model.observations import Observation
from redkube.model.specs import ClusterSpec
from redkube.platform.local.addressing import address_pool, busy
from redkube.platform.local.layout import (
    ClusterLayout,
    ClusterRecord,
    MemberRecord,
    StateError,
    pid_alive,
    read_pid,
    state_root,
)
from redkube.platform.local.processes import is_our_server, stop_leftover
from redkube.platform.local.provisioning import new_record
from redkube.platform.local.servers import resolve_server

DEFAULTS = {"shards": 3, "replicas": 1, "node_timeout_ms": 5000}
POLL_S = 0.02
STOP_WAIT_S = 60.0

# Piped or captured output (not a terminal) gets room enough that nothing is cut off.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def up(args: argparse.Namespace) -> ExitStatus:
    started = time.monotonic()
    layout = ClusterLayout(state_root(), args.name)
    with creation_lock(layout.root):
        record = existing_or_new(layout, args)
    supervisor = supervisor_pid(layout)
    if supervisor is None:
        for member in record.members:
            if not is_ours_listening(layout, member) and busy(member.address):
                raise UserError(
                    f"{member.address} (node {member.name}) is in use by another process; "
                    "stop it and run `redkube up` again"
                )
        supervisor = spawn_supervisor(layout)
    status = wait_until_ready(layout, supervisor, args.timeout)
    elapsed = time.monotonic() - started
    rendering.print_ready(out, layout, record, status, elapsed)
    return ExitStatus.SUCCESS


def existing_or_new(layout: ClusterLayout, args: argparse.Namespace) -> ClusterRecord:
    if layout.exists():
        record = layout.load()
        wanted = ClusterSpec(
            name=args.name,
            shards=pick(args.shards, record.spec.shards),
            replicas=pick(args.replicas, record.spec.replicas),
            node_timeout_ms=pick(args.node_timeout_ms, record.spec.node_timeout_ms),
        )
        if wanted != record.spec:
            raise UserError(
                f"cluster {args.name!r} already exists with {rendering.shape(record.spec)}; "
                "reshaping is not supported yet: choose another --name, or run "
                f"`redkube down --purge --name {args.name}` first"
            )
        if args.server and resolve_server(args.server).path != record.server:
            raise UserError(
                f"cluster {args.name!r} runs {record.server}; --server cannot change it"
            )
        return record
    spec = ClusterSpec(
        name=args.name,
        shards=pick(args.shards, DEFAULTS["shards"]),
        replicas=pick(args.replicas, DEFAULTS["replicas"]),
        node_timeout_ms=pick(args.node_timeout_ms, DEFAULTS["node_timeout_ms"]),
    )
    server = resolve_server(args.server)
    record = new_record(layout, spec, server.path, args.hosts, address_pool())
    layout.create(record)
    return record


def pick(given: int | None, default: int) -> int:
    return default if given is None else given


@contextmanager
def creation_lock(root: Path) -> Iterator[None]:
    """Two `up`s at once must not hand out the same addresses or half-create one cluster."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def supervisor_pid(layout: ClusterLayout) -> int | None:
    pid = read_pid(layout.supervisor_pid_path)
    return pid if pid is not None and pid_alive(pid) else None


def is_ours_listening(layout: ClusterLayout, member: MemberRecord) -> bool:
    pid = read_pid(layout.pid_path(member.name))
    return pid is not None and is_our_server(layout, member, pid)


def read_status(layout: ClusterLayout) -> LoopStatus | None:
    try:
        data: dict[str, Any] = json.loads(layout.status_path.read_text())
        return LoopStatus.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def wait_until_ready(layout: ClusterLayout, supervisor: int, timeout: float) -> LoopStatus:
    deadline = time.monotonic() + timeout
    status: LoopStatus | None = None
    with out.status("starting nodes", spinner="dots") as spinner:
        while time.monotonic() < deadline:
            status = read_status(layout)
            if status is not None and status.phase is Phase.READY:
                return status
            if not pid_alive(supervisor):
                tail = rendering.tail(layout.supervisor_log_path, 3)
                raise UserError(f"the supervisor stopped before the cluster was ready: {tail}")
            if status is not None:
                if status.phase is Phase.BOOTSTRAPPING and status.crashing:
                    node = status.crashing[0]
                    log = rendering.tail(layout.node_dir(node) / "server.log", 1)
                    raise UserError(
                        f"node {node} keeps crashing ({log}); the supervisor keeps retrying, "
                        f"`redkube down --name {layout.name}` stops it"
                    )
                spinner.update(f"{status.phase.value.lower()}: {status.step}")
            time.sleep(POLL_S)
    step = status.step if status else "no status yet"
    raise UserError(
        f"not ready after {timeout:.0f}s (last step: {step}); it keeps trying in the "
        f"background, see `redkube status --name {layout.name}`",
        ExitStatus.TIMEOUT,
    )


def exists(name: str) -> bool:
    return ClusterLayout(state_root(), name).exists()


def status(args: argparse.Namespace) -> ExitStatus:
    layout = ClusterLayout(state_root(), args.name)
    record = layout.load()
    supervisor = supervisor_pid(layout)
    loop_status = read_status(layout) if supervisor is not None else None
    observation = asyncio.run(observe_record(layout, record))
    rendering.print_status(out, layout, record, observation, supervisor, loop_status)
    return ExitStatus.SUCCESS


async def observe_record(layout: ClusterLayout, record: ClusterRecord) -> Observation:
    members = [
        Member(
            name=m.name,
            shard=m.shard,
            ordinal=m.ordinal,
            address=m.address,
            domain=m.domain,
            state=MemberState.RUNNING if is_ours_listening(layout, m) else MemberState.STOPPED,
        )
        for m in record.members
    ]
    pool = ClientPool(layout.password(), timeout=0.5)
    try:
        return await observe(members, pool)
    finally:
        await pool.close()


def down(args: argparse.Namespace) -> ExitStatus:
    layout = ClusterLayout(state_root(), args.name)
    record = layout.load()
    supervisor = supervisor_pid(layout)
    if supervisor is not None:
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        with out.status(f"stopping {args.name}", spinner="dots"):
            while pid_alive(supervisor) and time.monotonic() < deadline:
                time.sleep(POLL_S)
        if pid_alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    for member in record.members:
        asyncio.run(stop_leftover(layout, member))
    if args.purge:
        shutil.rmtree(layout.dir)
        out.print(f"cluster {args.name!r} stopped and deleted")
    else:
        out.print(f"cluster {args.name!r} stopped; its data stays in {layout.dir}")
    return ExitStatus.SUCCESS


def kill(args: argparse.Namespace) -> ExitStatus:
    cluster = cluster_of(args.node)
    if not cluster:
        raise UserError(f"{args.node!r} is not a node name like redkube-0-0")
    layout = ClusterLayout(state_root(), cluster)
    try:
        member = layout.load_member(args.node)
    except StateError as error:
        raise UserError(str(error)) from error
    pid = read_pid(layout.pid_path(args.node))
    if pid is None or not is_our_server(layout, member, pid):
        raise UserError(f"node {args.node} is not running")
    os.kill(pid, signal.SIGKILL)
    out.print(
        f"killed {args.node} (pid {pid}); watch it heal with `redkube status --name {cluster}`"
    )
    return ExitStatus.SUCCESS


def logs(args: argparse.Namespace) -> ExitStatus:
    node: str | None = args.node
    name = args.name
    if node is not None:
        name = cluster_of(node) or name
    layout = ClusterLayout(state_root(), name)
    if node is None:
        path = layout.supervisor_log_path
    else:
        layout.load_member(node)
        path = layout.log_path(node)
    if not path.exists():
        raise UserError(f"no log yet at {path}")
    print(rendering.tail(path, args.lines, joiner="\n"))
    return ExitStatus.SUCCESS


def list_clusters(args: argparse.Namespace) -> ExitStatus:
    root = state_root()
    found = [ClusterLayout(root, p.parent.name) for p in sorted(root.glob("*/cluster.json"))]
    if not found:
        out.print(f"no clusters under {root}")
    for layout in found:
        record = layout.load()
        running = "running" if supervisor_pid(layout) else "stopped"
        out.print(f"{layout.name}\t{rendering.shape(record.spec)}\t{running}")
    return ExitStatus.SUCCESS
