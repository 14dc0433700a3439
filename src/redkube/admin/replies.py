"""Parsing Redis replies into model values, at the edge. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping

from redkube.model.addresses import Address
from redkube.model.nodes import NodeEntry


def parse_cluster_nodes(text: str) -> tuple[NodeEntry, ...]:
    """Parse CLUSTER NODES output (one node per line)."""
    return tuple(parse_node_line(line) for line in text.splitlines() if line.strip())


def parse_node_line(line: str) -> NodeEntry:
    fields = line.split()
    if len(fields) < 8:
        raise ValueError(f"malformed CLUSTER NODES line: {line!r}")
    node_id, address_text, flags_text, master, _ping, _pong, epoch, link = fields[:8]
    address: Address | None
    host = address_text.split(",", 1)[0].split("@", 1)[0].rpartition(":")[0]
    address = Address.parse(address_text) if host else None
    slots: set[int] = set()
    migrating: dict[int, str] = {}
    importing: dict[int, str] = {}
    for token in fields[8:]:
        if token.startswith("["):
            body = token.strip("[]")
            if "->-" in body:
                slot, target = body.split("->-")
                migrating[int(slot)] = target
            elif "-<-" in body:
                slot, source = body.split("-<-")
                importing[int(slot)] = source
            continue
        start, _, end = token.partition("-")
        slots.update(range(int(start), int(end or start) + 1))
    return NodeEntry(
        node_id=node_id,
        address=address,
        flags=frozenset(flags_text.split(",")),
        master_id=None if master == "-" else master,
        config_epoch=int(epoch),
        connected=link == "connected",
        slots=frozenset(slots),
        migrating=migrating,
        importing=importing,
    )


def parse_info(text: str) -> dict[str, str]:
    """Parse INFO output into ``field -> raw value`` (sections merged)."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def replication_offset(info: Mapping[str, str]) -> int:
    key = "slave_repl_offset" if info.get("role") == "slave" else "master_repl_offset"
    return int(info.get(key, "0") or 0)


def master_link_up(info: Mapping[str, str]) -> bool | None:
    if info.get("role") != "slave":
        return None
    return info.get("master_link_status") == "up"


def replicating_from(info: Mapping[str, str]) -> Address | None:
    """Where a replica's replication link points (INFO's master_host and master_port)."""
    host, port = info.get("master_host"), info.get("master_port")
    if info.get("role") != "slave" or not host or not port or not port.isdigit():
        return None
    return Address(host, int(port))


def clients_in_wait(client_list: str) -> int:
    """How many clients CLIENT LIST shows blocked (flag ``b``) in WAIT or WAITAOF. A client
    held by CLIENT PAUSE is blocked too, but its last command is the write it waits to run."""
    count = 0
    for line in client_list.splitlines():
        fields = dict(part.partition("=")[::2] for part in line.split())
        if "b" in fields.get("flags", "") and fields.get("cmd") in ("wait", "waitaof"):
            count += 1
    return count


def server_version(info: Mapping[str, str]) -> str:
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"
