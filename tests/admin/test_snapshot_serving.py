"""RDB files loaded into a server as its master (`redkube.admin.snapshot_serving`).

Real standalone servers of both families (the `server` fixture; Valkey 9.0 too when cached),
started here on 127.0.0.1:7700-7799: a snapshot is made by one server (SAVE), then served to
fresh ones with a password. Covers several key types and TTLs, a payload of many chunks, two
replicas of one SnapshotServer, an RDB too new for the target (Redis 7.0), a file of the other
family, and stopping with replicas still attached. A raw client covers the protocol's corners.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redkube.admin import snapshot_serving
from redkube.admin.connections import AdminError
from redkube.admin.snapshot_serving import REPLICATION_ID, SnapshotServer, load_into
from tests import servers as cached_servers
from tests.admin import standalone
from tests.admin.standalone import HOST, KEYS, Node, fill, free_port
from tests.conftest import REDIS, VALKEY, server_path

PORTS = range(7700, 7800)


class Servers(standalone.Servers):
    def __init__(self, root: Path) -> None:
        super().__init__(root, PORTS)

    def start(self, binary: str, *options: str, password: bool = True) -> Node:
        return self.start_server(binary, *options, password=password)

    def snapshot(self, binary: str, destination: Path, big: bool = False) -> Path:
        """An RDB file of ``fill``'s keys (and ~30 MB more with ``big``) written by ``binary``."""
        node = self.start(binary, password=False)
        fill(node.client)
        if big:
            pipe = node.client.pipeline(transaction=False)
            for i in range(30):
                pipe.set(f"blob:{i}", os.urandom(1_000_000))  # incompressible
            pipe.execute()
        node.client.save()
        shutil.copyfile(node.folder / "dump.rdb", destination)
        return destination


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def check_loaded(node: Node, count: int = KEYS + 2) -> None:
    client = node.client
    assert client.dbsize() == count
    assert client.get("k:0") == "value-0"
    assert client.hgetall("k:1") == {"n": "1", "pad": "p" * 40}
    assert client.lrange("k:2", 0, -1) == ["a", "2", "c"]
    assert client.smembers("k:3") == {"x", "y", "3"}
    assert client.zrange("k:4", 0, -1, withscores=True) == [("low", 4.0), ("high", 4.5)]
    assert client.get("big") == "abc" * 20_000
    assert client.get("number") == "123456"
    assert 3500 < client.ttl("k:0") <= 3600
    assert 3500 < client.ttl("k:7") <= 3600
    assert client.ttl("k:1") == -1


def is_master(node: Node) -> bool:
    return str(node.client.execute_command("ROLE")[0]) == "master"


async def serve_and_load(
    servers: Servers, file: Path, *targets: Node, timeout_s: float = 30
) -> tuple[SnapshotServer, list[int]]:
    """Load ``file`` into each target in turn through one SnapshotServer, then stop it."""
    snapshot = SnapshotServer(file)
    port = await snapshot.start(HOST, free_port(PORTS))
    try:
        sizes = []
        for target in targets:
            sizes.append(
                await load_into(HOST, target.port, servers.password, HOST, snapshot, timeout_s)
            )
    finally:
        await snapshot.stop()
    assert snapshot.port == port
    for handshake in snapshot.handshakes:
        print("handshake:", handshake)
    return snapshot, sizes


def binary(kind: str) -> str:
    path = server_path(kind)
    if path is None:
        if os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
            pytest.fail(f"{kind} server binary not installed")
        pytest.skip(f"{kind} server binary not installed")
    return path


# ---- real servers ------------------------------------------------------------------------------


def test_snapshot_loads_into_a_fresh_server(servers: Servers, server: str, tmp_path: Path) -> None:
    file = servers.snapshot(server, tmp_path / "backup.rdb")
    target = servers.start(server)
    target.client.set("stale", "gone after the load")

    snapshot, sizes = asyncio.run(serve_and_load(servers, file, target))

    assert sizes == [KEYS + 2]
    assert (snapshot.served, snapshot.loaded, snapshot.dropped) == (1, 1, 0)
    handshake = snapshot.handshakes[0]
    assert handshake[0] == "PING"
    assert handshake[-1].startswith("PSYNC")
    assert any(command.startswith("REPLCONF capa eof") for command in handshake)
    # The SnapshotServer is gone: the target is a master with the data.
    assert is_master(target)
    check_loaded(target)
    assert target.client.get("stale") is None
    target.client.set("written", "after the load")  # a master takes writes
    log = target.log.read_text()
    assert "<-> REPLICA sync: Finished with success" in log  # MASTER (Redis), PRIMARY (Valkey)


def test_a_payload_of_many_chunks(servers: Servers, server: str, tmp_path: Path) -> None:
    file = servers.snapshot(server, tmp_path / "big.rdb", big=True)
    assert file.stat().st_size > 30_000_000
    target = servers.start(server)

    snapshot, sizes = asyncio.run(serve_and_load(servers, file, target, timeout_s=60))

    assert sizes == [KEYS + 2 + 30]
    assert snapshot.served == 1
    check_loaded(target, KEYS + 2 + 30)
    assert target.client.strlen("blob:29") == 1_000_000


def test_two_replicas_of_one_snapshot_server(servers: Servers, server: str, tmp_path: Path) -> None:
    file = servers.snapshot(server, tmp_path / "backup.rdb")
    first, second = servers.start(server), servers.start(server)

    snapshot, sizes = asyncio.run(serve_and_load(servers, file, first, second))

    assert sizes == [KEYS + 2, KEYS + 2]
    assert (snapshot.served, snapshot.loaded, snapshot.dropped) == (2, 2, 0)
    check_loaded(first)
    check_loaded(second)


def test_a_replica_keeps_its_data_when_the_server_stops(
    servers: Servers, server: str, tmp_path: Path
) -> None:
    """Without REPLICAOF NO ONE: stop() closes the live link promptly, the replica keeps the
    data (and retries the link in vain)."""
    file = servers.snapshot(server, tmp_path / "backup.rdb")
    target = servers.start(server)

    async def scenario() -> float:
        snapshot = SnapshotServer(file)
        port = await snapshot.start(HOST, free_port(PORTS))
        await asyncio.to_thread(target.client.replicaof, HOST, port)
        deadline = time.monotonic() + 30
        while True:
            info = await asyncio.to_thread(target.client.info, "replication")
            if info.get("master_link_status") == "up" and snapshot.loaded == 1:
                break
            assert time.monotonic() < deadline, f"not loaded: {info}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the replica's REPLCONF ACKs, each second, are ignored
        started = time.monotonic()
        await snapshot.stop()
        assert snapshot.dropped == 0
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1
    deadline = time.monotonic() + 10
    while target.client.info("replication")["master_link_status"] != "down":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.5)  # a reconnection attempt or two
    assert not is_master(target)
    check_loaded(target)


@pytest.mark.parametrize(
    ("source", "load"),
    [("valkey", "disabled"), ("valkey", "swapdb"), ("redis-0011", "disabled")],
)
def test_a_newer_file_is_refused_by_redis_7_0(
    servers: Servers, tmp_path: Path, source: str, load: str
) -> None:
    """Valkey 9's VALKEY080, or an RDB of version 11 (Redis 7.2's, and Valkey 9's to a replica
    that reports no version): Redis 7.0 knows up to version 10."""
    valkey, redis_7 = binary(VALKEY), binary(REDIS)
    if source == "valkey":
        file = servers.snapshot(valkey, tmp_path / "valkey.rdb")
    else:
        file = servers.snapshot(redis_7, tmp_path / "redis.rdb")
        data = file.read_bytes()
        assert data.startswith(b"REDIS0010")
        file.write_bytes(b"REDIS0011" + data[9:])
    target = servers.start(redis_7, "--repl-diskless-load", load)
    if not target.client.info("server")["redis_version"].startswith("7.0."):
        pytest.skip("the installed redis-server is not 7.0")
    print("file header:", file.read_bytes()[:9])

    started = time.monotonic()
    with pytest.raises(AdminError, match=rf"{HOST}:{target.port} could not load the snapshot"):
        asyncio.run(serve_and_load(servers, file, target, timeout_s=30))
    assert time.monotonic() - started < 10
    log = target.log.read_text()
    assert "Failed trying to load the MASTER synchronization DB" in log
    refusal = "Wrong signature" if source == "valkey" else "Can't handle RDB format version 11"
    assert refusal in log
    assert is_master(target)  # no longer retrying the sync
    assert target.client.dbsize() == 0


@pytest.mark.parametrize(
    "options",
    [
        ["--masterauth", "any"],
        ["--repl-diskless-load", "swapdb"],
        ["--repl-diskless-load", "on-empty-db"],
        ["--dual-channel-replication-enabled", "yes"],
    ],
    ids=lambda options: options[0].strip("-"),
)
def test_replication_settings_of_the_target(
    servers: Servers, server: str, tmp_path: Path, options: list[str]
) -> None:
    file = servers.snapshot(server, tmp_path / "backup.rdb")
    target = servers.start(server)
    try:
        target.client.config_set(options[0].strip("-"), options[1])
    except redis.ResponseError as error:
        pytest.skip(f"{options[0]} unknown here: {error}")

    snapshot, sizes = asyncio.run(serve_and_load(servers, file, target))

    assert sizes == [KEYS + 2]
    assert (snapshot.served, snapshot.loaded, snapshot.dropped) == (1, 1, 0)
    assert ("AUTH ***" in snapshot.handshakes[0]) == (options[0] == "--masterauth")
    check_loaded(target)


def test_a_redis_7_file_loads_into_valkey(servers: Servers, tmp_path: Path) -> None:
    valkey, redis_7 = binary(VALKEY), binary(REDIS)
    file = servers.snapshot(redis_7, tmp_path / "redis.rdb")
    assert file.read_bytes().startswith(b"REDIS00")
    target = servers.start(valkey)

    _, sizes = asyncio.run(serve_and_load(servers, file, target))

    assert sizes == [KEYS + 2]
    check_loaded(target)


@pytest.mark.parametrize("writer", ["9.1", "9.0"])
def test_a_valkey_file_loads_into_valkey_9_0(servers: Servers, tmp_path: Path, writer: str) -> None:
    old = cached_servers.require(cached_servers.valkey_9_0(), "Valkey 9.0.0")
    source = binary(VALKEY) if writer == "9.1" else old
    file = servers.snapshot(source, tmp_path / "valkey.rdb")
    target = servers.start(old)

    _, sizes = asyncio.run(serve_and_load(servers, file, target))

    assert sizes == [KEYS + 2]
    check_loaded(target)


def test_a_target_that_never_connects_times_out(servers: Servers, tmp_path: Path) -> None:
    file = servers.snapshot(binary(VALKEY), tmp_path / "backup.rdb")
    target = servers.start(binary(VALKEY))

    async def scenario() -> None:
        snapshot = SnapshotServer(file)
        await snapshot.start(HOST, free_port(PORTS))
        try:
            # Nothing listens there: the target tries to connect in vain.
            await load_into(HOST, target.port, servers.password, "127.0.0.2", snapshot, 1.5)
        finally:
            await snapshot.stop()

    started = time.monotonic()
    with pytest.raises(AdminError, match=r"not loaded in 1.5 s.*never connected"):
        asyncio.run(scenario())
    assert time.monotonic() - started < 5
    assert is_master(target)


def test_a_cluster_mode_target_is_refused(servers: Servers, tmp_path: Path) -> None:
    file = servers.snapshot(binary(VALKEY), tmp_path / "backup.rdb")
    target = servers.start(
        binary(VALKEY), "--cluster-enabled", "yes",
        "--cluster-config-file", str(tmp_path / "nodes.conf"),
        "--cluster-port", str(free_port(PORTS)),
    )  # fmt: skip
    with pytest.raises(AdminError, match="REPLICAOF"):
        asyncio.run(serve_and_load(servers, file, target, timeout_s=5))


# ---- the protocol, with a raw client -----------------------------------------------------------


async def line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 5)


def test_the_handshake_and_both_sync_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_serving, "PING_INTERVAL_S", 0.2)
    payload = secrets.token_bytes(300_000)
    file = tmp_path / "raw.rdb"
    file.write_bytes(payload)

    async def scenario() -> SnapshotServer:
        snapshot = SnapshotServer(file)
        port = await snapshot.start(HOST, free_port(PORTS))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"PING\r\n")  # inline
        assert await line(reader) == b"+PONG\r\n"
        writer.write(b"\n*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n")
        assert await line(reader) == b"+OK\r\n"
        writer.write(b"REPLCONF ACK 0\r\n")  # no reply: the next line answers the next command
        writer.write(b"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n")
        writer.write(b"$6\r\npsync2\r\n")
        assert await line(reader) == b"+OK\r\n"
        writer.write(b"CLIENT SETNAME x\r\n")
        assert await line(reader) == b"+OK\r\n"
        writer.write(b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
        assert await line(reader) == b"+FULLRESYNC %s 0\r\n" % REPLICATION_ID.encode()
        assert await line(reader) == b"$%d\r\n" % len(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
        writer.write(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
        assert await line(reader) == b"PING\r\n"  # the master's keep-alive, unasked

        old_reader, old_writer = await asyncio.open_connection(HOST, port)
        old_writer.write(b"SYNC\r\n")
        assert await line(old_reader) == b"$%d\r\n" % len(payload)
        assert await asyncio.wait_for(old_reader.readexactly(len(payload)), 5) == payload
        old_writer.close()
        deadline = time.monotonic() + 5
        while snapshot.dropped < 1:  # it left without an ACK: it refused the payload
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

        idle_reader, idle_writer = await asyncio.open_connection(HOST, port)
        idle_writer.write(b"PING\r\n")
        assert await line(idle_reader) == b"+PONG\r\n"
        started = time.monotonic()
        await snapshot.stop()
        assert time.monotonic() - started < 1
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by stop()
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
        writer.close()
        idle_writer.close()
        return snapshot

    snapshot = asyncio.run(scenario())
    assert (snapshot.connections, snapshot.served, snapshot.loaded, snapshot.dropped) == (
        3,
        2,
        1,
        1,
    )
    assert snapshot.handshakes[0] == [
        "PING",
        "AUTH ***",
        "REPLCONF capa eof capa psync2",
        "CLIENT SETNAME x",
        "PSYNC ? -1",
    ]
    assert snapshot.handshakes[1] == ["SYNC"]


def test_a_peer_that_sends_garbage_is_closed(tmp_path: Path) -> None:
    file = tmp_path / "raw.rdb"
    file.write_bytes(b"REDIS0011")

    async def scenario() -> None:
        snapshot = SnapshotServer(file)
        port = await snapshot.start(HOST, free_port(PORTS))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"*2\r\n:1\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await snapshot.stop()
        assert (snapshot.served, snapshot.dropped) == (0, 0)

    asyncio.run(scenario())


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AdminError, match="no snapshot file"):
        asyncio.run(SnapshotServer(tmp_path / "absent.rdb").start(HOST, free_port(PORTS)))


def test_stop_during_a_transfer_returns_promptly(tmp_path: Path) -> None:
    file = tmp_path / "large.rdb"
    file.write_bytes(os.urandom(50_000_000))

    async def scenario() -> tuple[float, SnapshotServer]:
        snapshot = SnapshotServer(file)
        port = await snapshot.start(HOST, free_port(PORTS))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"PSYNC ? -1\r\n")
        assert (await line(reader)).startswith(b"+FULLRESYNC")
        await reader.readexactly(1_000_000)  # then read no more: the sender blocks
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await snapshot.stop()
        elapsed = time.monotonic() - started
        writer.close()
        return elapsed, snapshot

    elapsed, snapshot = asyncio.run(scenario())
    assert elapsed < 1
    assert (snapshot.served, snapshot.dropped) == (0, 0)
