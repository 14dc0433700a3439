"""The local platform: node processes supervised the way a kubelet supervises containers.

A node that exits is reported at once (``wait_for_change`` returns) and marked stopped; the loop
decides when to start it again, so a dead master's replica is promoted before the old master comes
back. A node that keeps crashing is held in back-off (1 s, 2 s, 4 s, ... up to 30 s).

A cluster created with ``new_address_on_restart`` behaves like Pods that are recreated: a node
that starts again (it has a nodes.conf, so peers may know it) gets a new address first, saved in
the record before the process starts; its data dir and node ID stay. While it is down it keeps
the address it died with, as the loop needs to tie the dead node to what its peers remember.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redkube.model.members import Member, MemberState
from redkube.platform.local.addressing import AddressError
from redkube.platform.local.configs import render_config, revision
from redkube.platform.local.layout import (
    ClusterLayout,
    ClusterRecord,
    MemberRecord,
    log_tail,
    pid_alive,
    read_pid,
)
from redkube.platform.local.provisioning import readdress, without_members
from redkube.platform.private_files import write_private

QUICK_CRASH_S = 10.0
MAX_BACKOFF_S = 30.0
LISTEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 30.0
# SIGTERM, then SIGKILL after this: the server's own shutdown (a master waits up to its
# shutdown-timeout, 10 s by default, for its replicas, then writes its files) fits inside.


@dataclass
class _Node:
    record: MemberRecord
    state: MemberState = MemberState.STOPPED
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_crashes: int = 0
    stopping: bool = False
    revision: str = ""  # what it was started on ("" before its first start)


class LocalPlatform:
    starts_members = True

    def __init__(
        self,
        layout: ClusterLayout,
        record: ClusterRecord,
        on_event: Callable[[str], None] = lambda message: None,
    ) -> None:
        self._layout = layout
        self._record = record
        self._on_event = on_event
        self._nodes = {m.name: _Node(m) for m in record.members}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def members(self) -> Sequence[Member]:
        target = revision(self._record.spec, self._record.server)
        return [
            Member(
                name=node.record.name,
                shard=node.record.shard,
                ordinal=node.record.ordinal,
                address=node.record.address,
                domain=node.record.domain,
                state=node.state,
                revision=node.revision,
                target_revision=target,
            )
            for node in self._nodes.values()
        ]

    @property
    def server(self) -> str:
        return self._record.server

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    async def start(self, names: Sequence[str]) -> None:
        nodes = [self._nodes[name] for name in names]
        nodes = [node for node in nodes if node.state is MemberState.STOPPED]
        # A leftover process runs at the address the record still holds: stop it first.
        await asyncio.gather(*(stop_leftover(self._layout, node.record) for node in nodes))
        if self._record.new_address_on_restart:
            await self._readdress(nodes)
        await asyncio.gather(*(self._start(node) for node in nodes))

    async def _readdress(self, nodes: list[_Node]) -> None:
        """New addresses for the nodes that ran before, all handed out at once."""
        names = [
            n.record.name for n in nodes if self._layout.nodes_conf_path(n.record.name).exists()
        ]
        if not names:
            return
        try:
            record = await asyncio.to_thread(readdress, self._layout, self._record, names)
        except AddressError as error:
            self._on_event(f"no new addresses for {', '.join(names)} ({error}); they keep theirs")
            return
        members = {m.name: m for m in record.members}
        moves = [f"{n} {members[n].ip} (was {self._nodes[n].record.ip})" for n in names]
        self._record = record
        for node in nodes:
            node.record = members[node.record.name]
        self._on_event(f"new addresses: {', '.join(moves)}")

    async def _start(self, node: _Node) -> None:
        if node.state is not MemberState.STOPPED:
            return
        name = node.record.name
        data = self._layout.data_dir(name)
        data.mkdir(parents=True, exist_ok=True)
        config = self._layout.node_dir(name) / "redis.conf"
        spec, pair = self._record.spec, self._layout.node_pair(name)
        if spec.tls:
            # Its certificate names its current address (a node that moved gets a new one).
            ips = (node.record.address.host,)
            await asyncio.to_thread(self._layout.authority.issue, pair, name, ips)
        ca = self._layout.authority.cert_path
        # The passwords and users of the moment: a rotation may be under way.
        credentials, users = self._layout.credentials(), self._layout.users(time.time())
        text = render_config(spec, node.record.address, data, credentials, pair, ca, users)
        write_private(config, text.encode())
        started_on = revision(self._record.spec, self._record.server)
        with open(self._layout.log_path(name), "ab") as log:
            process = await asyncio.create_subprocess_exec(
                self._record.server,
                str(config),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._layout.pid_path(name).write_text(f"{process.pid}\n")
        self._layout.killed_path(name).unlink(missing_ok=True)
        node.process = process
        node.state = MemberState.RUNNING
        node.stopping = False
        node.revision = started_on
        node.started_at = time.monotonic()
        self._spawn(self._watch(node, process))
        await self._await_listening(node, process)

    async def _await_listening(self, node: _Node, process: asyncio.subprocess.Process) -> None:
        address = node.record.address
        deadline = time.monotonic() + LISTEN_TIMEOUT_S
        while time.monotonic() < deadline and process.returncode is None:
            try:
                _, writer = await asyncio.open_connection(address.host, address.port)
            except OSError:
                await asyncio.sleep(0.005)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _watch(self, node: _Node, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if node.stopping or node.process is not process:
            return
        lived = time.monotonic() - node.started_at
        node.quick_crashes = node.quick_crashes + 1 if lived < QUICK_CRASH_S else 1
        node.process = None
        why = describe_exit(code)
        if killed_on_purpose(self._layout, node.record.name, process.pid):
            # `redkube kill`: a Pod deleted, not a crash loop; it starts again without back-off.
            node.quick_crashes = 0
            why += " (redkube kill)"
        tail = last_line(self._layout.log_path(node.record.name))
        if node.quick_crashes >= 2:
            delay = min(2.0 ** (node.quick_crashes - 2), MAX_BACKOFF_S)
            node.state = MemberState.BACKOFF
            self._on_event(f"{node.record.name} {why} ({tail}); back-off {delay:.0f}s")
            self._spawn(self._end_backoff(node, delay))
        else:
            node.state = MemberState.STOPPED
            self._on_event(f"{node.record.name} {why}")
        self._changed.set()

    async def _end_backoff(self, node: _Node, delay: float) -> None:
        await asyncio.sleep(delay)
        if node.state is MemberState.BACKOFF:
            node.state = MemberState.STOPPED
            self._changed.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def restart(self, names: Sequence[str]) -> None:
        """Stop the named nodes gracefully (SIGTERM: Redis flushes its AOF), then start them on
        the current record's server and settings (with a new address, where nodes get one)."""
        nodes = [self._nodes[name] for name in names if name in self._nodes]
        await self._stop(nodes)
        for node in nodes:
            node.quick_crashes = 0
            if node.state is MemberState.BACKOFF:
                node.state = MemberState.STOPPED
        await self.start([node.record.name for node in nodes])
        self._changed.set()

    def reload(self, record: ClusterRecord) -> None:
        """A new record saved by `redkube up`: new members join (stopped; the loop starts them);
        members the spec dropped stay until the loop retires them; another server or other
        settings make the running nodes outdated (the loop restarts them one by one)."""
        self._record = record
        for member in record.members:
            if member.name not in self._nodes:
                self._nodes[member.name] = _Node(member)
        self._changed.set()

    async def retire(self, names: Sequence[str]) -> None:
        """Stop the named members, delete their directories (data included: they hold no key
        any more) and drop them from the record."""
        nodes = [self._nodes[name] for name in names if name in self._nodes]
        await self._stop(nodes)
        for node in nodes:
            await stop_leftover(self._layout, node.record)
            shutil.rmtree(self._layout.node_dir(node.record.name), ignore_errors=True)
            del self._nodes[node.record.name]
        self._record = await asyncio.to_thread(
            without_members, self._layout, {node.record.name for node in nodes}
        )
        self._on_event(f"retired {', '.join(names)}")
        self._changed.set()

    async def stop_all(self) -> None:
        """SIGTERM every node (Redis flushes its AOF), then SIGKILL what outlives the grace
        period."""
        await self._stop(list(self._nodes.values()))
        for task in list(self._tasks):
            task.cancel()

    async def _stop(self, nodes: list[_Node]) -> None:
        running = [n for n in nodes if n.process is not None]
        for node in running:
            node.stopping = True
            assert node.process is not None
            with contextlib.suppress(ProcessLookupError):
                node.process.terminate()
        for node in running:
            assert node.process is not None
            try:
                await asyncio.wait_for(node.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    node.process.kill()
                await node.process.wait()
            node.state = MemberState.STOPPED
            self._layout.pid_path(node.record.name).unlink(missing_ok=True)


async def stop_leftover(layout: ClusterLayout, member: MemberRecord) -> None:
    """A node process left from a supervisor that died: stop it gracefully before restarting."""
    pid = read_pid(layout.pid_path(member.name))
    if pid is None or not is_our_server(layout, member, pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and is_our_server(layout, member, pid):
        await asyncio.sleep(0.02)
    if is_our_server(layout, member, pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def is_our_server(layout: ClusterLayout, member: MemberRecord, pid: int) -> bool:
    """The pid is alive and runs this node (pids get reused). Redis rewrites its process title to
    ``<binary> <ip>:<port> [cluster]``, so the address identifies it as well as the config path."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            arguments = cmdline.read().split(b"\0")
    except OSError:
        return False
    title = b" ".join(arguments)
    return str(layout.node_dir(member.name) / "redis.conf").encode() in title or (
        f" {member.address} ".encode() in title + b" "
    )


def killed_on_purpose(layout: ClusterLayout, member: str, pid: int) -> bool:
    """`redkube kill` wrote this pid down before it sent SIGKILL."""
    return read_pid(layout.killed_path(member)) == pid


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def last_line(path: Path) -> str:
    lines = log_tail(path, 1)
    if lines is None:
        return "no log"
    return lines[-1].strip() if lines else "empty log"
