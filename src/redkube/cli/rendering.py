"""Terminal output for the local commands (rich)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from redkube.control.statuses import LoopStatus
from redkube.model.nodes import NodeView, Role
from redkube.model.observations import Observation
from redkube.model.slots import TOTAL_SLOTS, describe_ranges, ranges_of
from redkube.model.specs import ClusterSpec
from redkube.platform.local.layout import ClusterLayout, ClusterRecord, log_tail

SHARD_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
MAP_CELLS = 64


def shape(spec: ClusterSpec) -> str:
    replicas = "replica" if spec.replicas == 1 else "replicas"
    return f"{spec.shards} shards x {spec.replicas} {replicas}"


def tail(path: Path, lines: int, joiner: str = " | ") -> str:
    found = log_tail(path, lines)
    return "no log" if found is None else joiner.join(found)


def print_ready(
    out: Console,
    layout: ClusterLayout,
    record: ClusterRecord,
    status: LoopStatus,
    elapsed: float,
    metrics: str | None = None,
) -> None:
    first = record.members[0].address
    secret = shlex.quote(str(layout.password_path))
    name_flag = "" if record.spec.name == "redkube" else f" --name {record.spec.name}"
    out.print(
        f"[green]✔[/] cluster [bold]{record.spec.name}[/] is ready: {shape(record.spec)}, "
        f"{len(record.members)} nodes, {status.linked_replicas} replicas linked "
        f"({elapsed:.1f}s)"
    )
    # The password itself is never printed (terminal scrollback, CI logs); nor put in a
    # command's arguments (`ps`): redis-cli reads it from REDISCLI_AUTH.
    out.print(f"  password  in {layout.password_path}   [dim](mode 0600)[/]")
    tls = layout.client_tls(record.spec)
    cli_tls = py_tls = ""
    if tls is not None:
        cli_tls = f"--tls --cacert {shlex.quote(tls.ca)} "
        py_tls = f", ssl=True, ssl_ca_certs={tls.ca!r}"
        if record.spec.tls_client_certs:
            cli_tls += f"--cert {shlex.quote(tls.cert)} --key {shlex.quote(tls.key)} "
            py_tls += f", ssl_certfile={tls.cert!r}, ssl_keyfile={tls.key!r}"
    users = layout.users(time.time())
    if users:
        # The default user is off: clients are the cluster's ACL users, with their passwords.
        names = ", ".join(u.name for u in users)
        out.print(
            f"  connect   redis-cli {cli_tls}--user {users[0].name} --askpass -c -h {first.host} "
            f"-p {first.port}   [dim](users: {names})[/]"
        )
        out.print(
            f"  python    redis.cluster.RedisCluster(host={first.host!r}, port={first.port}, "
            f"username={users[0].name!r}, password=...{py_tls})"
        )
    else:
        out.print(
            f'  connect   REDISCLI_AUTH="$(cat {secret})" redis-cli {cli_tls}-c -h {first.host} '
            f"-p {first.port}"
        )
        out.print(
            f"  python    redis.cluster.RedisCluster(host={first.host!r}, port={first.port}, "
            f"password=open({str(layout.password_path)!r}).read().strip(){py_tls})"
        )
    if metrics is not None:
        out.print(f"  metrics   {metrics}")
    out.print(
        f"  more      redkube status{name_flag}  |  redkube kill {record.members[0].name}"
        f"  |  redkube down{name_flag}"
    )


def print_status(
    out: Console,
    layout: ClusterLayout,
    record: ClusterRecord,
    observation: Observation,
    supervisor: int | None,
    loop_status: LoopStatus | None,
    metrics: str | None = None,
) -> None:
    spec = record.spec
    if supervisor is None:
        state = "[red]supervisor not running[/] (start it with `redkube up`)"
    elif loop_status is None:
        state = f"supervisor pid {supervisor}, no status yet"
    else:
        colour = "green" if loop_status.phase.value == "Ready" else "yellow"
        state = f"[{colour}]{loop_status.phase.value}[/] (supervisor pid {supervisor})"
    out.print(
        f"[bold]{spec.name}[/]: {shape(spec)}, node timeout {spec.node_timeout_ms} ms — {state}"
    )
    if loop_status is not None and loop_status.step:
        out.print(f"  step: {loop_status.step}")
    if loop_status is not None and loop_status.migration is not None:
        out.print(f"  resharding: {loop_status.migration.describe()}")
    if loop_status is not None and loop_status.rollout and not loop_status.rollout.done:
        out.print(f"  updating: {loop_status.rollout.describe()}")
    if metrics is not None:
        out.print(f"  metrics: {metrics}")
    if spec.tls:
        required = ", client certificates required" if spec.tls_client_certs else ""
        out.print(f"  tls: on, CA {layout.authority.cert_path}{required}")
    users = layout.users(time.time())
    if users:
        admin = layout.admin_user() or "default (switching)"
        names = ", ".join(u.name for u in users)
        out.print(f"  acl users: {names}; default user off, redkube acts as {admin}")
    rotation = layout.rotation()
    if rotation is not None:
        if rotation.adding:
            out.print("  password rotation: teaching every node the new password")
        else:
            until = time.strftime("%H:%M:%S", time.localtime(rotation.retire_at or 0))
            out.print(f"  password rotation: the old password works until {until}")

    table = Table(box=None, pad_edge=False)
    columns = ("node", "shard", "role", "address", "host", "slots", "link", "lag")
    numbers = ("keys", "memory", "ops/s")
    for column in (*columns, *numbers):
        table.add_column(column, justify="right" if column in numbers else "left", no_wrap=True)
    offsets = {view.node_id: view.replication_offset for view in observation.views()}
    shard_of_id: dict[str, int] = {}
    for observed in observation.members:
        if observed.view is not None:
            shard_of_id[observed.view.node_id] = observed.member.shard
    for observed in observation.members:
        member = observed.member
        view = observed.view
        colour = SHARD_COLOURS[member.shard % len(SHARD_COLOURS)]
        if view is None:
            table.add_row(
                Text(member.name, style=colour),
                str(member.shard),
                Text("down", style="red"),
                str(member.address),
                member.domain.host,
                "",
                observed.error or "",
                "",
                "",
                "",
                "",
            )
            continue
        table.add_row(
            Text(member.name, style=colour),
            str(member.shard),
            role_text(view),
            str(member.address),
            member.domain.host,
            describe_ranges(ranges_of(view.myself.slots)) if view.myself.slots else "",
            link_text(view),
            lag_text(view, offsets),
            str(view.keys),
            human_bytes(view.used_memory),
            str(view.ops_per_sec),
        )
    out.print(table)
    out.print(slot_map(observation, shard_of_id))
    problems = loop_status.problems if loop_status is not None else ()
    for problem in problems:
        out.print(f"  [yellow]![/] {problem}")
    if loop_status is not None and loop_status.events:
        out.print("recent events:")
        for event in loop_status.events[-5:]:
            out.print(f"  {event.message}")


def role_text(view: NodeView) -> Text:
    if view.myself.role is Role.MASTER:
        return Text("master", style="bold")
    return Text("replica")


def link_text(view: NodeView) -> Text:
    if view.master_link_up is None:
        return Text("-")
    return Text("up", style="green") if view.master_link_up else Text("down", style="red")


def lag_text(view: NodeView, offsets: dict[str, int]) -> str:
    """How many bytes of its master's replication stream a replica still lacks."""
    master = view.myself.master_id
    if master is None or master not in offsets:
        return "-"
    return human_bytes(max(0, offsets[master] - view.replication_offset))


def slot_map(observation: Observation, shard_of_id: dict[str, int]) -> Text:
    """One cell per 256 slots, coloured by the shard whose master serves them."""
    owner: dict[int, int] = {}
    for view in observation.views():
        if view.myself.is_master and view.node_id in shard_of_id:
            for slot in view.myself.slots:
                owner[slot] = shard_of_id[view.node_id]
    per_cell = TOTAL_SLOTS // MAP_CELLS
    text = Text("slots ")
    for cell in range(MAP_CELLS):
        shards = {owner.get(slot) for slot in range(cell * per_cell, (cell + 1) * per_cell)}
        if None in shards:
            text.append("·", style="red")
        else:
            shard = min(s for s in shards if s is not None)
            text.append(str(shard % 10), style=f"bold {SHARD_COLOURS[shard % len(SHARD_COLOURS)]}")
    text.append(f" (each cell {per_cell} slots; digit = shard; red · = not served)")
    return text


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"
