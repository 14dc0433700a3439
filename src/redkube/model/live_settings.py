"""Which redis.conf settings a running server changes with CONFIG SET, and which need a restart.

This module is the one place the live/restart split lives: everything that decides whether a
changed ``spec.config`` key can be applied in place (CONFIG SET) or needs a rolling restart asks
here. ``tests/admin/test_live_settings.py`` checks both tables against real servers of both
families we support (Redis 7.0 and Valkey 9): every key in ``LIVE_SETTINGS`` is set and read back
on both, every key in ``RESTART_SETTINGS`` is refused by CONFIG SET on at least one.

``canonical`` makes what a user writes and what ``CONFIG GET`` answers comparable. It follows the
servers' own parsers (strict integers, ``yes``/``no`` only, Redis memory units) and their
clamping, so a value the server would refuse never compares equal to anything it reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class SettingKind(Enum):
    MEMORY = "memory"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"
    TEXT = "text"


_M = SettingKind.MEMORY
_I = SettingKind.INTEGER
_B = SettingKind.BOOLEAN
_E = SettingKind.ENUM
_T = SettingKind.TEXT

LIVE_SETTINGS: Mapping[str, SettingKind] = MappingProxyType(
    {
        # Memory and eviction.
        "maxmemory": _M,
        "maxmemory-policy": _E,
        "maxmemory-samples": _I,
        "maxmemory-eviction-tenacity": _I,
        "lfu-log-factor": _I,
        "lfu-decay-time": _I,
        "lazyfree-lazy-eviction": _B,
        "lazyfree-lazy-expire": _B,
        "lazyfree-lazy-server-del": _B,
        "lazyfree-lazy-user-del": _B,
        "lazyfree-lazy-user-flush": _B,
        # Background work.
        "hz": _I,
        "active-expire-effort": _I,
        "activerehashing": _B,
        # `activedefrag` itself is refused by both on builds without jemalloc's defrag support;
        # its tuning knobs are accepted everywhere.
        "active-defrag-ignore-bytes": _M,
        "active-defrag-threshold-lower": _I,
        "active-defrag-threshold-upper": _I,
        "active-defrag-cycle-min": _I,
        "active-defrag-cycle-max": _I,
        "active-defrag-max-scan-fields": _I,
        # Clients.
        "timeout": _I,
        "tcp-keepalive": _I,
        "maxclients": _I,
        "client-query-buffer-limit": _M,
        "proto-max-bulk-len": _M,
        "busy-reply-threshold": _I,
        # Observability.
        "slowlog-log-slower-than": _I,
        "slowlog-max-len": _I,
        "latency-monitor-threshold": _I,
        "latency-tracking": _B,
        "loglevel": _E,
        "notify-keyspace-events": _T,
        # Replication.
        "replica-lazy-flush": _B,
        "replica-serve-stale-data": _B,
        "replica-read-only": _B,
        "repl-backlog-size": _M,
        "repl-backlog-ttl": _I,
        "repl-timeout": _I,
        "repl-ping-replica-period": _I,
        "min-replicas-to-write": _I,
        "min-replicas-max-lag": _I,
        # Persistence.
        "appendfsync": _E,
        "no-appendfsync-on-rewrite": _B,
        "auto-aof-rewrite-percentage": _I,
        "auto-aof-rewrite-min-size": _M,
        "stop-writes-on-bgsave-error": _B,
        "rdbcompression": _B,
        # Encodings of small values.
        "hash-max-listpack-entries": _I,
        "hash-max-listpack-value": _M,
        "set-max-intset-entries": _I,
        "zset-max-listpack-entries": _I,
        "zset-max-listpack-value": _M,
        "list-max-listpack-size": _I,
        "list-compress-depth": _I,
        "stream-node-max-bytes": _M,
        "stream-node-max-entries": _I,
        "hll-sparse-max-bytes": _M,
        # Cluster behaviour.
        "cluster-require-full-coverage": _B,
        "cluster-allow-reads-when-down": _B,
        "cluster-replica-validity-factor": _I,
        # Shutdown.
        "shutdown-timeout": _I,
    }
)

RESTART_SETTINGS: frozenset[str] = frozenset(
    {
        "databases",
        "io-threads",  # live on Valkey 9, immutable on Redis 7.0
        "io-threads-do-reads",  # immutable on Redis 7.0, gone from Valkey 9
        "rdbchecksum",
        "tcp-backlog",
        "cluster-enabled",
        "cluster-config-file",
        "cluster-port",
        "daemonize",
        "supervised",
        "pidfile",
        "logfile",
        "syslog-enabled",
        "syslog-ident",
        "syslog-facility",
        "unixsocket",
        "unixsocketperm",
        "aclfile",
        "appendfilename",
        "appenddirname",
        "enable-debug-command",
        "enable-module-command",
        "enable-protected-configs",
        "always-show-logo",
        "set-proc-title",
        "disable-thp",
        "rename-command",  # a redis.conf directive only; CONFIG SET does not know it
    }
)

# Redis' memtoull: digits, then an optional unit, no sign, no fraction, no space.
_MEMORY = re.compile(r"([0-9]+)(b|k|kb|m|mb|g|gb)?", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
# Redis' string2ll: no sign but '-', no leading zeros, no "-0".
_INTEGER = re.compile(r"-?[1-9][0-9]*|0")

# Values the server accepts and then stores clamped: (accepted low, high), (stored low, high).
_CLAMPED: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] = MappingProxyType(
    {
        "hz": ((0, 2**31 - 1), (1, 500)),  # CONFIG_MIN_HZ, CONFIG_MAX_HZ
        "repl-backlog-size": ((1, 2**63 - 1), (16 * 1024, 2**63 - 1)),  # ..._MIN_SIZE
    }
)

# The event classes 'A' stands for, in the order CONFIG GET prints them.
_EVENT_CLASSES = "g$lshzxetd"
_EVENT_FLAGS = frozenset(_EVENT_CLASSES + "AnKEm")


def is_live(key: str) -> bool:
    """Whether CONFIG SET changes ``key`` on a running server of either family."""
    return key.strip().lower() in LIVE_SETTINGS


def canonical(key: str, value: str) -> str:
    """``value`` of ``key`` in the form ``CONFIG GET key`` reports it after ``CONFIG SET``.

    A value the server would refuse is returned stripped and otherwise unchanged.
    """
    text = value.strip()
    name = key.strip().lower()
    kind = LIVE_SETTINGS.get(name)
    if kind is SettingKind.MEMORY:
        match = _MEMORY.fullmatch(text)
        if match is None:
            return text
        return _clamped(name, int(match[1]) * _UNITS[(match[2] or "").lower()])
    if kind is SettingKind.INTEGER:
        return _clamped(name, int(text)) if _INTEGER.fullmatch(text) else text
    if kind is SettingKind.BOOLEAN:
        return text.lower() if text.lower() in ("yes", "no") else text
    if kind is SettingKind.ENUM:
        return text.lower()
    if kind is SettingKind.TEXT:
        if name == "notify-keyspace-events":
            return _keyspace_events(text)
        return " ".join(text.split())
    return text


def _clamped(name: str, number: int) -> str:
    if name in _CLAMPED:
        (accepted_low, accepted_high), (low, high) = _CLAMPED[name]
        if accepted_low <= number <= accepted_high:
            number = min(max(number, low), high)
    return str(number)


def _keyspace_events(text: str) -> str:
    """The flags as the server prints them: classes ('A' when all are set), then K, E, m.

    Both families print no 'n' (new-key events) beside 'A' although they keep it, so neither
    side of a comparison can show it there.
    """
    flags = set(text)
    if not flags <= _EVENT_FLAGS:
        return text
    if "A" in flags:
        flags.update(_EVENT_CLASSES)
    if flags.issuperset(_EVENT_CLASSES):
        classes = "A"
    else:
        classes = "".join(flag for flag in _EVENT_CLASSES + "n" if flag in flags)
    return classes + "".join(flag for flag in "KEm" if flag in flags)
