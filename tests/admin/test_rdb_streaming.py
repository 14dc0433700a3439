"""Snapshots taken over the network (`redkube.admin.rdb_streaming`) and the key count their
headers declare (`redkube.model.rdb_header`).

`declared_keys` is tested first on hand-made byte strings, then everything against real
standalone servers of both families (the `server` fixture), started here on 127.0.0.1:7600-7699:
disk-based and diskless transfers, a replica as the source, a cluster-mode node, and refusals
(wrong or missing password, nothing listening). A scripted in-process server covers the
protocol's corners (keep-alives, a mark split across reads, an older server, silence).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from redkube.admin.connections import AdminError, Unreachable
from redkube.admin.rdb_streaming import StreamedSnapshot, stream_snapshot
from redkube.model.rdb_header import declared_keys, declared_keys_in
from tests.admin import standalone
from tests.admin.standalone import HOST, KEYS, Node, fill, free_port

PORTS = range(7600, 7700)


# ---- declared_keys on hand-made bytes ----------------------------------------------------------


def length(value: int) -> bytes:
    if value < 1 << 6:
        return bytes([value])
    if value < 1 << 14:
        return bytes([0x40 | value >> 8, value & 0xFF])
    return b"\x80" + struct.pack(">I", value)


def string(raw: bytes) -> bytes:
    return length(len(raw)) + raw


def aux(key: bytes, value: bytes) -> bytes:
    return b"\xfa" + string(key) + value


def resizedb(db: int, keys: int, expires: int) -> bytes:
    return b"\xfe" + length(db) + b"\xfb" + length(keys) + length(expires)


KEY_RECORD = b"\x00" + string(b"key") + string(b"value")
END = b"\xff" + bytes(8)
HEADER = (
    b"REDIS0011"
    + aux(b"redis-ver", string(b"7.2.4"))
    + aux(b"redis-bits", b"\xc0\x40")  # int8
    + aux(b"ctime", b"\xc2" + struct.pack("<i", 1_700_000_000))  # int32
    + aux(b"aof-base", b"\xc1" + struct.pack("<h", 0))  # int16
)


def test_empty_rdb_declares_no_keys() -> None:
    assert declared_keys_in(HEADER + END) == 0


def test_resizedb_key_count_in_each_length_encoding() -> None:
    for count in (5, 300, 70_000):
        data = HEADER + resizedb(0, count, 1) + KEY_RECORD + END
        assert declared_keys_in(data) == count


def test_lzf_compressed_aux_value_is_skipped() -> None:
    compressed = b"\x1f" + b"x" * 32  # the bytes are skipped, not decompressed
    lzf = b"\xc3" + length(len(compressed)) + length(1000) + compressed
    data = HEADER + aux(b"big", lzf) + resizedb(0, 42, 0) + KEY_RECORD + END
    assert declared_keys_in(data) == 42


def test_key_record_may_start_with_an_expire() -> None:
    expire = b"\xfc" + struct.pack("<q", 1_900_000_000_000)
    assert declared_keys_in(HEADER + resizedb(0, 7, 7) + expire + KEY_RECORD + END) == 7


def test_valkey_signature_slot_opcodes_functions_and_module_aux() -> None:
    slot_info = b"\xf4" + length(100) + length(3) + length(1)
    slot_import = b"\xf3" + string(b"j" * 40) + length(2) + length(0) + length(10)
    slot_import += length(20) + length(16383)
    function = b"\xf5" + string(b"#!lua name=lib\nserver.register_function('f', ...)")
    module = b"\xf7" + length(12345) + length(2) + length(2)  # id, when opcode UINT, when
    module += length(1) + length(9) + length(3) + bytes(4) + length(4) + bytes(8)
    module += length(5) + string(b"blob") + length(0)  # SINT, FLOAT, DOUBLE, STRING, EOF
    data = b"VALKEY080" + aux(b"valkey-ver", string(b"9.1.2")) + function + module
    data += resizedb(0, 3, 1) + slot_info + slot_import + aux(b"slot-info", string(b"100,3,1,0"))
    assert declared_keys_in(data + KEY_RECORD + END) == 3


def test_only_the_first_database_before_its_keys_is_counted() -> None:
    data = HEADER + resizedb(0, 4, 0) + KEY_RECORD + resizedb(1, 6, 0) + KEY_RECORD + END
    assert declared_keys_in(data) == 4
    # Databases without keys write nothing; the walk meets db 3's RESIZEDB first.
    assert declared_keys_in(HEADER + resizedb(3, 6, 0) + KEY_RECORD + END) == 6


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"NOTRDB0011\xff",
        b"REDIS00x1\xff",
        HEADER + resizedb(0, 5, 0)[:-1],  # truncated inside RESIZEDB
        HEADER + b"\xfa\x05ab",  # truncated inside an AUX string
        HEADER + b"\xf6" + string(b"pre-GA function") + END,  # 7.0 release candidates only
        HEADER + b"\xf3" + resizedb(0, 1, 0) + KEY_RECORD + END,  # Redis 8 key metadata
        HEADER + b"\x80" + END,  # neither an opcode nor a value type
        HEADER + b"\xfa\xc5" + END,  # unknown string encoding
        HEADER + KEY_RECORD + END,  # a key without RESIZEDB (RDB before version 7)
    ],
)
def test_unwalkable_bytes_declare_nothing(data: bytes) -> None:
    assert declared_keys_in(data) is None


def test_declared_keys_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(HEADER + resizedb(0, 9, 2) + KEY_RECORD + END)
    assert declared_keys(path) == 9


# ---- servers -----------------------------------------------------------------------------------


class Servers(standalone.Servers):
    """``binary``'s processes, with the password as masterauth too (replicas of each other)."""

    def __init__(self, binary: str, root: Path) -> None:
        super().__init__(root, PORTS)
        self.binary = binary

    def start(self, *options: str, password: bool = True, directory: Path | None = None) -> Node:
        return self.start_server(
            self.binary, *options, password=password, masterauth=password, directory=directory
        )


@pytest.fixture
def servers(server: str, tmp_path: Path) -> Iterator[Servers]:
    started = Servers(server, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def snapshot(
    node: Node, password: str | None, destination: Path, timeout_s: float = 30
) -> StreamedSnapshot:
    return asyncio.run(stream_snapshot(HOST, node.port, password, destination, timeout_s))


def check_file(result: StreamedSnapshot, path: Path, dbsize: int) -> None:
    data = path.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data.startswith((b"REDIS0", b"VALKEY"))
    assert result.keys == declared_keys(path) == dbsize


def check_loaded(servers: Servers, path: Path, count: int = KEYS) -> None:
    """The file loads in a fresh server, with the keys ``fill`` wrote."""
    loaded = servers.start("--dbfilename", path.name, password=False, directory=path.parent)
    client = loaded.client
    assert client.dbsize() == count + 2
    assert client.get("k:0") == "value-0"
    assert client.hgetall("k:1") == {"n": "1", "pad": "p" * 40}
    assert client.lrange("k:2", 0, -1) == ["a", "2", "c"]
    assert client.smembers("k:3") == {"x", "y", "3"}
    assert client.zrange("k:4", 0, -1, withscores=True) == [("low", 4.0), ("high", 4.5)]
    assert client.get("big") == "abc" * 20_000
    assert client.get("number") == "123456"
    assert 0 < client.ttl("k:0") <= 3600
    assert client.ttl("k:1") == -1


@pytest.mark.parametrize("diskless", ["yes", "no"])
def test_snapshot_of_a_primary_loads_in_a_fresh_server(
    servers: Servers, tmp_path: Path, diskless: str
) -> None:
    primary = servers.start()
    fill(primary.client)
    primary.client.config_set("repl-diskless-sync", diskless)
    primary.client.config_set("repl-diskless-sync-delay", 0)
    path = tmp_path / "out" / "snapshot.rdb"
    path.parent.mkdir()

    result = snapshot(primary, servers.password, path)

    check_file(result, path, primary.client.dbsize())
    target = "replicas sockets" if diskless == "yes" else "disk"
    assert f"Starting BGSAVE for SYNC with target: {target}" in primary.log.read_text()
    # The node's own format: Valkey 9 writes VALKEY080 (REDIS0011 to a replica of no version).
    magic = b"VALKEY" if "valkey_version" in primary.client.info("server") else b"REDIS"
    assert path.read_bytes().startswith(magic)
    check_loaded(servers, path)


def test_snapshot_of_a_replica(servers: Servers, tmp_path: Path) -> None:
    primary = servers.start()
    fill(primary.client)
    primary.client.config_set("repl-diskless-sync-delay", 0)
    replica = servers.start(
        "--replicaof", HOST, str(primary.port), "--repl-diskless-sync-delay", "0"
    )
    deadline = time.monotonic() + 10
    while replica.client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.05)
    assert replica.client.dbsize() == primary.client.dbsize()
    path = tmp_path / "replica.rdb"

    result = snapshot(replica, servers.password, path)

    check_file(result, path, replica.client.dbsize())
    check_loaded(servers, path)


def test_snapshot_of_a_cluster_mode_node(servers: Servers, tmp_path: Path) -> None:
    bus = free_port(PORTS)
    node = servers.start(
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(tmp_path / "nodes.conf"),
        "--cluster-port", str(bus),
        "--repl-diskless-sync-delay", "0",
    )  # fmt: skip
    node.client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    deadline = time.monotonic() + 10
    while "cluster_state:ok" not in node.client.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the cluster never got to state ok"
        time.sleep(0.05)
    fill(node.client)
    path = tmp_path / "cluster.rdb"

    result = snapshot(node, servers.password, path)

    check_file(result, path, node.client.dbsize())


def test_snapshot_of_an_empty_node(servers: Servers, tmp_path: Path) -> None:
    node = servers.start("--repl-diskless-sync-delay", "0")
    path = tmp_path / "empty.rdb"
    result = snapshot(node, servers.password, path)
    check_file(result, path, 0)


def test_wrong_password_is_refused(servers: Servers, tmp_path: Path) -> None:
    node = servers.start()
    path = tmp_path / "wrong.rdb"
    with pytest.raises(AdminError, match=rf"{HOST}:{node.port}.*AUTH failed.*WRONGPASS"):
        snapshot(node, "not-the-password", path)
    assert not path.exists()


def test_missing_password_is_refused(servers: Servers, tmp_path: Path) -> None:
    node = servers.start()
    path = tmp_path / "none.rdb"
    with pytest.raises(AdminError, match=rf"{HOST}:{node.port}.*needs a password"):
        snapshot(node, None, path)
    assert not path.exists()


def test_nothing_listening_is_unreachable(tmp_path: Path) -> None:
    port = free_port(PORTS)
    path = tmp_path / "nobody.rdb"
    with pytest.raises(Unreachable, match=rf"{HOST}:{port}.*cannot connect"):
        asyncio.run(stream_snapshot(HOST, port, "pw", path, timeout_s=5))
    assert not path.exists()


def test_an_existing_destination_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "taken.rdb"
    path.write_bytes(b"precious")
    with pytest.raises(AdminError, match="cannot create"):
        asyncio.run(stream_snapshot(HOST, free_port(PORTS), None, path, timeout_s=5))
    assert path.read_bytes() == b"precious"


# ---- a scripted server, for the protocol's corners ---------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
PAYLOAD = HEADER + resizedb(0, 1, 0) + KEY_RECORD + END


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    count = int((await reader.readline())[1:])
    parts = []
    for _ in range(count):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


def scripted(script: Script, destination: Path, timeout_s: float = 5) -> StreamedSnapshot:
    async def scenario() -> StreamedSnapshot:
        listener = await asyncio.start_server(script, HOST, free_port(PORTS))
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            return await stream_snapshot(HOST, port, None, destination, timeout_s=timeout_s)

    return asyncio.run(scenario())


def handshake(
    rdb_only_reply: bytes,
    payload: Callable[[asyncio.StreamWriter], Awaitable[None]],
    info: bytes = b"# Server\r\nredis_version:6.2.14\r\n",
) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await read_command(reader) == [b"REPLCONF", b"rdb-only", b"1"]
        writer.write(rdb_only_reply)
        assert await read_command(reader) == [b"INFO", b"server"]
        writer.write(b"$%d\r\n%s\r\n" % (len(info), info))
        if b"valkey_version:" in info:
            assert await read_command(reader) == [b"REPLCONF", b"version", b"9.1.2"]
            writer.write(b"+OK\r\n")
        assert await read_command(reader) == [b"REPLCONF", b"capa", b"eof"]
        writer.write(b"+OK\r\n")
        assert await read_command(reader) == [b"SYNC"]
        await payload(writer)
        await writer.drain()
        writer.close()

    return script


def test_keep_alives_then_a_sized_payload_from_an_older_server(tmp_path: Path) -> None:
    async def payload(writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            writer.write(b"\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"$%d\r\n%s" % (len(PAYLOAD), PAYLOAD))
        writer.write(b"*1\r\n$4\r\nPING\r\n")  # the replication stream: not part of the file

    path = tmp_path / "sized.rdb"
    script = handshake(b"-ERR Unrecognized REPLCONF option: rdb-only\r\n", payload)
    result = scripted(script, path)
    assert path.read_bytes() == PAYLOAD
    assert (result.size, result.keys) == (len(PAYLOAD), 1)


def test_diskless_payload_with_the_mark_split_across_reads(tmp_path: Path) -> None:
    mark = b"0123456789abcdef0123456789abcdef01234567"

    async def payload(writer: asyncio.StreamWriter) -> None:
        writer.write(b"\n$EOF:" + mark + b"\r\n")
        stream = PAYLOAD + mark
        for start in range(0, len(stream), 7):
            writer.write(stream[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0.001)

    path = tmp_path / "diskless.rdb"
    info = b"# Server\r\nredis_version:7.2.4\r\nvalkey_version:9.1.2\r\n"
    result = scripted(handshake(b"+OK\r\n", payload, info), path)
    assert path.read_bytes() == PAYLOAD
    assert result.sha256 == hashlib.sha256(PAYLOAD).hexdigest()


@pytest.mark.parametrize("diskless", [True, False])
def test_payload_of_several_chunks(tmp_path: Path, diskless: bool) -> None:
    big = (
        HEADER
        + resizedb(0, 1, 0)
        + b"\x00"
        + string(b"key")
        + string(secrets.token_bytes(3_500_000))
    )
    big += END
    mark = b"m" * 40

    async def payload(writer: asyncio.StreamWriter) -> None:
        writer.write(b"$EOF:" + mark + b"\r\n" if diskless else b"$%d\r\n" % len(big))
        stream = big + mark if diskless else big
        for start in range(0, len(stream), 100_000):
            writer.write(stream[start : start + 100_000])
            await writer.drain()

    path = tmp_path / "big.rdb"
    result = scripted(handshake(b"+OK\r\n", payload), path)
    assert path.read_bytes() == big
    assert result == StreamedSnapshot(len(big), hashlib.sha256(big).hexdigest(), 1)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"-NOMASTERLINK Can't SYNC while not connected with my master\r\n", "SYNC refused"),
        (b"$100\r\n" + b"x" * 50, "after 50 of 100 bytes"),
        (b"$EOF:" + b"m" * 40 + b"\r\n" + b"x" * 50, "no EOF mark"),
        (b"$EOF:short\r\n", "bad EOF mark"),
    ],
)
def test_refused_or_cut_short_transfers_leave_no_file(
    tmp_path: Path, reply: bytes, error: str
) -> None:
    async def payload(writer: asyncio.StreamWriter) -> None:
        writer.write(reply)

    path = tmp_path / "cut.rdb"
    with pytest.raises(AdminError, match=error):
        scripted(handshake(b"+OK\r\n", payload), path)
    assert not path.exists()


def test_a_silent_node_times_out(tmp_path: Path) -> None:
    async def payload(writer: asyncio.StreamWriter) -> None:
        writer.write(b"$1000\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(5)

    path = tmp_path / "silent.rdb"
    started = time.monotonic()
    with pytest.raises(AdminError, match=r"not done in 0.3 s"):
        scripted(handshake(b"+OK\r\n", payload), path, timeout_s=0.3)
    assert time.monotonic() - started < 3
    assert not path.exists()
