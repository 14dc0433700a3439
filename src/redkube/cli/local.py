"""The local-platform commands: up, status, down, kill, logs, list."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.observing import observe
from redkube.cli import rendering
from redkube.cli.exits import ExitStatus, UserError
from redkube.control.backing_up import back_up, fetch_snapshots, read_manifest
from redkube.control.daemon import spawn_supervisor
from redkube.control.restoring import restore as restore_keys
from redkube.control.statuses import LoopStatus, Phase
from redkube.kubernetes.resources import (
    CONFIG_FORMATS,
    CONFIG_KEY_PATTERN,
    FORBIDDEN_CONFIG_KEYS,
    config_value_message,
)
from redkube.model.backups import BackupError, BackupManifest
from redkube.model.members import Member, MemberState, cluster_of
from redkube.model.observations import Observation
from redkube.model.slots import describe_ranges
from redkube.model.specs import ClusterSpec
from redkube.planning.upgrading import change_refusal, version_of_server
from redkube.platform.local.addressing import address_pool, busy
from redkube.platform.local.configs import revision
from redkube.platform.local.layout import (
    ClusterLayout,
    ClusterRecord,
    MemberRecord,
    StateError,
    addresses_lock,
    pid_alive,
    read_pid,
    state_root,
)
from redkube.platform.local.processes import is_our_server, stop_leftover
from redkube.platform.local.provisioning import new_record, reshaped_record
from redkube.platform.local.servers import Server, inspect_server, require_tls, resolve_server
from redkube.platform.stores import Store, open_store

DEFAULTS = {"shards": 3, "replicas": 1, "node_timeout_ms": 5000}
POLL_S = 0.02
STOP_WAIT_S = 60.0

# Piped or captured output (not a terminal) gets room enough that nothing is cut off.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def up(args: argparse.Namespace) -> ExitStatus:
    started = time.monotonic()
    layout = ClusterLayout(state_root(), args.name)
    # Two `up`s at once must not hand out the same addresses or half-create one cluster.
    with addresses_lock(layout.root):
        record = existing_or_new(layout, args)
    supervisor = supervisor_pid(layout)
    if supervisor is not None:
        os.kill(supervisor, signal.SIGHUP)  # it reads the record again (a new shape, maybe)
    if supervisor is None:
        for member in record.members:
            moves = record.new_address_on_restart and layout.nodes_conf_path(member.name).exists()
            if not moves and not is_ours_listening(layout, member) and busy(member.address):
                raise UserError(
                    f"{member.address} (node {member.name}) is in use by another process; "
                    "stop it and run `redkube up` again"
                )
        supervisor = spawn_supervisor(layout)
    status = wait_until_ready(layout, supervisor, args.timeout, record)
    if args.rotate_password:
        wait_until_switched(layout, started + args.timeout)
    elapsed = time.monotonic() - started
    record = layout.load()  # nodes that started again may have new addresses
    metrics = read_metrics_url(layout, supervisor)
    rendering.print_ready(out, layout, record, status, elapsed, metrics)
    return ExitStatus.SUCCESS


def wait_until_switched(layout: ClusterLayout, deadline: float) -> None:
    """Until every node accepts the new password and it is the current one."""
    with out.status("teaching every node the new password", spinner="dots"):
        while (rotation := layout.rotation()) is not None and rotation.adding:
            if time.monotonic() > deadline:
                raise UserError(
                    "the new password is not on every node yet; the supervisor goes on (see "
                    f"`redkube status {layout.name}`)",
                    ExitStatus.TIMEOUT,
                )
            time.sleep(POLL_S)
    if rotation is not None and rotation.retire_at is not None:
        until = time.strftime("%H:%M:%S", time.localtime(rotation.retire_at))
        out.print(f"new password in {layout.password_path}; the old one works until {until}")


def existing_or_new(layout: ClusterLayout, args: argparse.Namespace) -> ClusterRecord:
    settings = parse_settings(args.config or [])
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UserError(f"--metrics-port {args.metrics_port}: a port is 0 to 65535")
    if layout.exists():
        record = layout.load()
        wanted = ClusterSpec(
            name=args.name,
            shards=pick(args.shards, record.spec.shards),
            replicas=pick(args.replicas, record.spec.replicas),
            node_timeout_ms=pick(args.node_timeout_ms, record.spec.node_timeout_ms),
            config=tuple({**dict(record.spec.config), **settings}.items()),
            tls=record.spec.tls,
            tls_client_certs=record.spec.tls_client_certs,
        )
        if wanted.node_timeout_ms != record.spec.node_timeout_ms:
            raise UserError(
                f"cluster {args.name!r} runs with a node timeout of "
                f"{record.spec.node_timeout_ms} ms; changing it is not supported yet"
            )
        if (args.tls and not record.spec.tls) or (
            args.tls_client_certs and not record.spec.tls_client_certs
        ):
            flag = "--tls-client-certs" if record.spec.tls else "--tls"
            raise UserError(
                f"cluster {args.name!r} was created without {flag}; it is chosen when a "
                "cluster is created (turning it on for a running cluster is not supported yet)"
            )
        if args.rotate_password:
            layout.begin_rotation(args.password_grace)
        if args.new_address_on_restart and not record.new_address_on_restart:
            raise UserError(
                f"cluster {args.name!r} was created without --new-address-on-restart; "
                "it is chosen when a cluster is created"
            )
        if args.server:
            record = with_server(record, args.server)
        if args.metrics_port is not None:
            record = replace(record, metrics_port=args.metrics_port)
        if wanted != record.spec:
            record = reshaped_record(layout, record, wanted, address_pool())
        if record != layout.load():
            layout.save(record)
        return record
    if args.rotate_password:
        raise UserError(f"--rotate-password: there is no cluster named {args.name!r} yet")
    spec = ClusterSpec(
        name=args.name,
        shards=pick(args.shards, DEFAULTS["shards"]),
        replicas=pick(args.replicas, DEFAULTS["replicas"]),
        node_timeout_ms=pick(args.node_timeout_ms, DEFAULTS["node_timeout_ms"]),
        config=tuple(settings.items()),
        tls=args.tls or args.tls_client_certs,
        tls_client_certs=args.tls_client_certs,
    )
    server = resolve_server(args.server)
    if spec.tls:
        require_tls(server)
    record = new_record(
        layout, spec, server.path, args.hosts, address_pool(), args.new_address_on_restart
    )
    if args.metrics_port is not None:
        record = replace(record, metrics_port=args.metrics_port)
    layout.create(record)
    return record


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """`--config KEY=VALUE` options: keys redkube manages are refused, and values of keys whose
    format is known must have it (as the RedisCluster's admission checks them)."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip().lower()
        if not equals or not re.fullmatch(CONFIG_KEY_PATTERN, key):
            raise UserError(
                f"--config {pair!r}: expected KEY=VALUE, e.g. maxmemory-policy=allkeys-lru"
            )
        if key in FORBIDDEN_CONFIG_KEYS:
            raise UserError(f"--config {key}: redkube manages this setting itself")
        if "\n" in value or "\r" in value:
            raise UserError(f"--config {key}: the value must be a single line")
        value_format = CONFIG_FORMATS.get(key)
        if value_format is not None and not value_format.accepts(value):
            raise UserError(f"--{config_value_message(key, value, value_format.expected)}")
        settings[key] = value
    return settings


def with_server(record: ClusterRecord, wanted: str) -> ClusterRecord:
    """The record on another server binary, when the data survives the change (checked before
    any node restarts: a server never gets data it cannot load)."""
    new = resolve_server(wanted)
    if new.path == record.server:
        return record
    if record.spec.tls:
        require_tls(new)
    old = inspect_server(record.server)
    old_version = version_of_server(f"{old.family} {old.version[0]}.{old.version[1]}")
    new_version = version_of_server(f"{new.family} {new.version[0]}.{new.version[1]}")
    assert old_version is not None and new_version is not None
    refusal = change_refusal(old_version, new_version)
    if refusal is not None:
        raise UserError(f"--server {wanted}: {refusal}")
    return replace(record, server=new.path)


def pick(given: int | None, default: int) -> int:
    return default if given is None else given


def supervisor_pid(layout: ClusterLayout) -> int | None:
    pid = read_pid(layout.supervisor_pid_path)
    return pid if pid is not None and pid_alive(pid) else None


def is_ours_listening(layout: ClusterLayout, member: MemberRecord) -> bool:
    pid = read_pid(layout.pid_path(member.name))
    return pid is not None and is_our_server(layout, member, pid)


def read_status(layout: ClusterLayout, written_by: int | None = None) -> LoopStatus | None:
    """The supervisor's last status; with ``written_by``, only one that supervisor wrote (a
    supervisor that was killed leaves its last status behind, Ready perhaps)."""
    try:
        data: dict[str, Any] = json.loads(layout.status_path.read_text())
        if written_by is not None and data.get("pid") != written_by:
            return None
        return LoopStatus.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_metrics_url(layout: ClusterLayout, supervisor: int) -> str | None:
    """Where that supervisor serves its metrics (or why it does not), as its status says."""
    try:
        data: dict[str, Any] = json.loads(layout.status_path.read_text())
    except (OSError, ValueError):
        return None
    url = data.get("metrics")
    return str(url) if data.get("pid") == supervisor and url else None


def wait_until_ready(
    layout: ClusterLayout, supervisor: int, timeout: float, record: ClusterRecord
) -> LoopStatus:
    """Until the supervisor reports Ready for this record (its shape, settings and server);
    the spinner shows its current step (a resharding's or a rolling update's progress)."""
    deadline = time.monotonic() + timeout
    status: LoopStatus | None = None
    expected = revision(record.spec, record.server)
    with out.status("starting nodes", spinner="dots") as spinner:
        while time.monotonic() < deadline:
            status = read_status(layout, written_by=supervisor)
            if status is not None and not worked_to(status, record.spec, expected):
                status = None  # the supervisor has not read the new record yet
            if status is not None and status.phase is Phase.READY:
                return status
            if superseded(layout, record):
                raise UserError(
                    f"cluster {layout.name!r} was changed again by another `redkube up` while "
                    "this one waited; that one waits for it now"
                )
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
                if status.error and "CONFIG SET" in status.error:
                    raise UserError(
                        f"a node refuses a setting ({status.error}); the supervisor keeps "
                        f"trying: change it with `redkube up --name {layout.name} --config "
                        "KEY=VALUE`"
                    )
                if status.migration is not None:
                    spinner.update(f"resharding: {status.migration.describe()}")
                elif status.rollout is not None and not status.rollout.done:
                    spinner.update(f"updating: {status.rollout.describe()}; {status.step}")
                else:
                    spinner.update(f"{status.phase.value.lower()}: {status.step}")
            time.sleep(POLL_S)
    step = status.step if status else "no status yet"
    raise UserError(
        f"not ready after {timeout:.0f}s (last step: {step}); it keeps trying in the "
        f"background, see `redkube status --name {layout.name}`",
        ExitStatus.TIMEOUT,
    )


def superseded(layout: ClusterLayout, record: ClusterRecord) -> bool:
    """Whether another `redkube up` saved other settings, another server or another shape."""
    try:
        saved = layout.load()
    except StateError:
        return False
    return (saved.spec, saved.server) != (record.spec, record.server)


def worked_to(status: LoopStatus, spec: ClusterSpec, expected_revision: str) -> bool:
    """Whether the pass that wrote ``status`` worked to this spec and server (an older status
    may still be on disk right after `redkube up` changed them)."""
    if status.shape not in (None, (spec.shards, spec.replicas)):
        return False
    if status.spec_digest and status.spec_digest != spec.digest():
        return False
    return status.rollout is None or status.rollout.update_revision == expected_revision


def exists(name: str) -> bool:
    return ClusterLayout(state_root(), name).exists()


def status(args: argparse.Namespace) -> ExitStatus:
    layout = ClusterLayout(state_root(), args.name)
    record = layout.load()
    supervisor = supervisor_pid(layout)
    loop_status = read_status(layout, written_by=supervisor) if supervisor is not None else None
    observation = asyncio.run(observe_record(layout, record))
    metrics = read_metrics_url(layout, supervisor) if supervisor is not None else None
    rendering.print_status(out, layout, record, observation, supervisor, loop_status, metrics)
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
    credentials = layout.credentials()
    pool = ClientPool(
        credentials.current, 0.5, layout.client_tls(record.spec), username=credentials.user
    )
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
    if args.all:
        return kill_all(args)
    if args.node is None:
        raise UserError("name a node to kill (e.g. redkube-0-0), or pass --all")
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
    kill_node(layout, member.name, pid)
    out.print(
        f"killed {args.node} (pid {pid}); watch it heal with `redkube status --name {cluster}`"
    )
    return ExitStatus.SUCCESS


def kill_all(args: argparse.Namespace) -> ExitStatus:
    """SIGKILL every running node of a cluster in one go, like every Pod deleted at once."""
    if args.node is not None:
        raise UserError("pass either a node name or --all, not both")
    layout = ClusterLayout(state_root(), args.name)
    record = layout.load()
    targets: list[tuple[str, int]] = []
    for member in record.members:
        pid = read_pid(layout.pid_path(member.name))
        if pid is not None and is_our_server(layout, member, pid):
            targets.append((member.name, pid))
    if not targets:
        raise UserError(f"no node of cluster {args.name!r} is running")
    for name, pid in targets:
        kill_node(layout, name, pid)
    down = len(record.members) - len(targets)
    skipped = f" ({down} were not running)" if down else ""
    out.print(
        f"killed {len(targets)} nodes of {args.name}{skipped}; "
        f"watch it heal with `redkube status --name {args.name}`"
    )
    return ExitStatus.SUCCESS


def kill_node(layout: ClusterLayout, name: str, pid: int) -> None:
    """SIGKILL, noted first so the supervisor treats it as a Pod deleted (no crash back-off)."""
    layout.killed_path(name).write_text(f"{pid}\n")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


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


def backup(args: argparse.Namespace) -> ExitStatus:
    layout = ClusterLayout(state_root(), args.name)
    record = layout.load()
    if supervisor_pid(layout) is None:
        raise UserError(f"cluster {args.name!r} is not running; `redkube up --name {args.name}`")
    server = inspect_server(record.server)
    store = open_store(args.to)
    started = time.monotonic()
    with out.status("observing the cluster", spinner="dots") as spinner:
        try:
            manifest = asyncio.run(
                _back_up(layout, record, server, store, args.consistent, spinner.update)
            )
        except AdminError as error:
            raise UserError(
                f"backup failed: {error}; {store.location} holds no manifest (the backup is "
                "incomplete and never restored): run it again"
            ) from error
    seconds = time.monotonic() - started
    size = sum(s.size for s in manifest.shards)
    out.print(
        f"[green]✔[/] backup of [bold]{record.spec.name}[/] in {store.location}: "
        f"{len(manifest.shards)} shards, {manifest.keys:,} keys, "
        f"{rendering.human_bytes(size)} ({seconds:.1f}s)"
    )
    for snapshot in manifest.shards:
        out.print(
            f"  shard {snapshot.shard}  {describe_ranges(snapshot.slots):<12} "
            f"{snapshot.keys:>9,} keys  from {snapshot.node} ({snapshot.role})  {snapshot.file}"
        )
    if manifest.consistent:
        out.print(f"  one point in time: writes paused {manifest.paused_ms:.0f} ms")
    else:
        out.print("  each shard's snapshot is its own point in time (--consistent: one for all)")
    return ExitStatus.SUCCESS


async def _back_up(
    layout: ClusterLayout,
    record: ClusterRecord,
    server: Server,
    store: Store,
    consistent: bool,
    progress: Callable[[str], None],
) -> BackupManifest:
    observation = await observe_record(layout, record)
    # Each snapshot's copy waits here while it is checked and stored: beside the nodes' data.
    with tempfile.TemporaryDirectory(dir=layout.root, prefix=".backup-") as work:
        async with admin_pool(layout, record) as pool:
            return await back_up(
                record.spec, server.release, server.path, observation, pool, store, Path(work),
                consistent, progress,
            )  # fmt: skip


def restore(args: argparse.Namespace, up_args: argparse.Namespace) -> ExitStatus:
    store = open_store(args.source)
    manifest = read_manifest(store)  # before anything is created: a bad backup changes nothing
    if exists(args.name):
        raise UserError(f"cluster {args.name!r} exists; restore creates a new cluster")
    if (why := format_refusal(manifest.server, resolve_server(args.server))) is not None:
        raise UserError(why)
    if up_args.shards is None:
        up_args.shards = len(manifest.shards)
    root = state_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".restore-") as work:
        with out.status("fetching the backup", spinner="dots") as spinner:
            fetch_snapshots(
                store, manifest, Path(work), spinner.update
            )  # checked, still nothing made
        if up(up_args) != ExitStatus.SUCCESS:
            return ExitStatus.ERROR
        layout = ClusterLayout(root, args.name)
        record = layout.load()
        if record.spec.tls:
            raise UserError("restoring into a TLS cluster is not supported yet")
        started = time.monotonic()
        with out.status("restoring", spinner="dots") as spinner:
            try:
                moved = asyncio.run(_restore(layout, record, manifest, Path(work), spinner.update))
            except (AdminError, BackupError) as error:
                raise UserError(
                    f"restore failed: {error}; the new cluster {args.name!r} holds part of the "
                    f"backup: `redkube down --name {args.name} --purge`, then restore again"
                ) from error
    seconds = time.monotonic() - started
    rate = moved / seconds if seconds > 0 else 0.0
    expired = manifest.keys - moved
    out.print(
        f"[green]✔[/] restored {moved:,} keys of {manifest.keys:,} into [bold]{args.name}[/] "
        f"({record.spec.shards} shards; the backup had {len(manifest.shards)}) in "
        f"{seconds:.1f}s ({rate:,.0f} keys/s)"
        + (f"; {expired:,} expired meanwhile" if expired > 0 else "")
    )
    return ExitStatus.SUCCESS


def format_refusal(backup_server: str, target: Server) -> str | None:
    """Why the target server cannot load the backup's snapshots (an RDB format newer than it
    reads), said before anything is created."""
    old = version_of_server(backup_server)
    new = version_of_server(target.release)
    if old is None or new is None or new.reads(old):
        return None
    return (
        f"the backup was taken on {old} (RDB format {old.rdb_version}); {new} ({target.path}) "
        f"cannot load it: restore with --server on {old} or a newer {old.family} server"
    )


async def _restore(
    layout: ClusterLayout,
    record: ClusterRecord,
    manifest: BackupManifest,
    source: Path,
    progress: Callable[[str], None],
) -> int:
    observation = await observe_record(layout, record)
    async with admin_pool(layout, record) as pool:
        return await restore_keys(manifest, source, record.server, observation, pool, progress)


@contextlib.asynccontextmanager
async def admin_pool(layout: ClusterLayout, record: ClusterRecord) -> AsyncIterator[ClientPool]:
    """redkube's clients of the cluster's nodes, closed after."""
    credentials = layout.credentials()
    pool = ClientPool(
        credentials.current, tls=layout.client_tls(record.spec), username=credentials.user
    )
    try:
        yield pool
    finally:
        await pool.close()
