"""A node's snapshot (an RDB file) taken over the network, as `redis-cli --rdb` takes it.

The operator cannot read a Pod's files, so it asks the node for a full synchronization as a
replica would, and keeps the RDB payload instead of loading it. On one raw connection:

- ``AUTH <password>`` when there is one;
- ``REPLCONF rdb-only 1`` (Redis >= 7.0, Valkey): the node sends the RDB and closes the link, it
  never takes us for a replica to stream writes to; refused by an older server, we go on without
  it and close the link ourselves after the payload;
- on Valkey (INFO server has ``valkey_version``), ``REPLCONF version <that version>``: else
  Valkey 9 sends a diskless transfer in the older RDB 11 format, losing what it cannot hold;
- ``REPLCONF capa eof``: we accept a diskless transfer, so a node with ``repl-diskless-sync yes``
  streams its fork's output straight to us instead of writing a file first;
- ``SYNC``.

The node answers with keep-alive newlines while it prepares the snapshot, then either
``$<length>\\r\\n`` and that many bytes (disk-based sync) or ``$EOF:<40-byte mark>\\r\\n``, the
data, and the same mark (diskless sync; the mark is not part of the file). The payload goes to
the destination file in chunks, hashed as it goes: it may be gigabytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from redkube.admin.connections import AdminError, Unreachable
from redkube.model.rdb_header import declared_keys

CHUNK_BYTES = 1024 * 1024
EOF_MARK_BYTES = 40
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class StreamedSnapshot:
    """The file written: its size in bytes, its SHA-256 (hex), and the keys its header declares
    (``redkube.model.rdb_header.declared_keys``; None if the header could not be walked)."""

    size: int
    sha256: str
    keys: int | None


class _Refused(Exception):
    """The node answered a command with an error (or not at all as RESP expects)."""


async def stream_snapshot(
    host: str,
    port: int,
    password: str | None,
    destination: Path,
    timeout_s: float = 600.0,
    ssl_context: ssl.SSLContext | None = None,
) -> StreamedSnapshot:
    """Take the node's snapshot into ``destination`` (created new, mode 0600), all within
    ``timeout_s``. Any failure raises AdminError (Unreachable when the connection fails) naming
    ``host:port``, and removes the partial file."""
    where = f"{host}:{port}"
    try:
        descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise AdminError(f"snapshot of {where}: cannot create {destination}: {error}") from error
    deadline = asyncio.timeout(timeout_s)
    try:
        with open(descriptor, "wb") as handle:
            async with deadline:
                size, digest = await _receive(host, port, password, ssl_context, handle, where)
            await asyncio.to_thread(_flush, handle)
        keys = await asyncio.to_thread(declared_keys, destination)
    except BaseException as error:
        destination.unlink(missing_ok=True)
        if isinstance(error, TimeoutError) and deadline.expired():
            raise AdminError(f"snapshot of {where}: not done in {timeout_s} s") from error
        if isinstance(error, _Refused):
            raise AdminError(f"snapshot of {where}: {error}") from error
        if isinstance(error, (OSError, EOFError, asyncio.LimitOverrunError)):
            raise AdminError(f"snapshot of {where}: transfer failed: {error!r}") from error
        raise
    return StreamedSnapshot(size=size, sha256=digest, keys=keys)


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


async def _receive(
    host: str,
    port: int,
    password: str | None,
    ssl_context: ssl.SSLContext | None,
    handle: BinaryIO,
    where: str,
) -> tuple[int, str]:
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
    except OSError as error:
        raise Unreachable(f"snapshot of {where}: cannot connect: {error}") from error
    try:
        if password is not None:
            reply = await _command(reader, writer, b"AUTH", password.encode())
            if reply != b"+OK":
                raise _Refused(f"AUTH failed (wrong password?): {_text(reply)}")
        # Refused by a server older than 7.0: it may stream writes after the payload, and we
        # close the link once the payload is in.
        reply = await _command(reader, writer, b"REPLCONF", b"rdb-only", b"1")
        if reply.startswith(b"-NOAUTH"):
            raise _Refused(f"the node needs a password: {_text(reply)}")
        version = await _valkey_version(reader, writer)
        if version is not None:
            # Valkey >= 9 sends a replica that reports no version an RDB of version 11 (REDIS
            # magic), where what that format cannot hold (hash field TTLs) is lost; reporting
            # the node's own version gets its own format (VALKEY080 on Valkey 9).
            await _command(reader, writer, b"REPLCONF", b"version", version)
        await _command(reader, writer, b"REPLCONF", b"capa", b"eof")
        writer.write(_resp(b"SYNC"))
        await writer.drain()
        return await _payload(reader, handle)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)


def _resp(*parts: bytes) -> bytes:
    encoded = [b"*%d\r\n" % len(parts)]
    for part in parts:
        encoded.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(encoded)


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *parts: bytes
) -> bytes:
    """Send one command, return its one-line reply (``+...`` or ``-...``) without CRLF."""
    writer.write(_resp(*parts))
    await writer.drain()
    reply = await _line(reader)
    if not reply.startswith((b"+", b"-")):
        raise _Refused(f"{parts[0].decode()}: unexpected reply {_text(reply)}")
    return reply


async def _valkey_version(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes | None:
    """``valkey_version`` of INFO server; None on Redis (or when INFO is refused)."""
    writer.write(_resp(b"INFO", b"server"))
    await writer.drain()
    header = await _line(reader)
    if header.startswith(b"-"):
        return None
    if not header.startswith(b"$"):
        raise _Refused(f"INFO: unexpected reply {_text(header)}")
    try:
        size = int(header[1:])
    except ValueError:
        raise _Refused(f"INFO: bad reply length in {_text(header)}") from None
    body = await reader.readexactly(size + 2)
    for line in body.splitlines():
        if line.startswith(b"valkey_version:"):
            return line.split(b":", 1)[1].strip()
    return None


async def _line(reader: asyncio.StreamReader) -> bytes:
    return (await reader.readuntil(b"\n")).rstrip(b"\r\n")


def _text(reply: bytes) -> str:
    return reply.decode(errors="replace")[:200]


async def _payload(reader: asyncio.StreamReader, handle: BinaryIO) -> tuple[int, str]:
    """Read SYNC's answer into ``handle``; return the payload's size and SHA-256."""
    header = await _line(reader)
    while not header:  # keep-alive newlines while the node prepares the snapshot
        header = await _line(reader)
    if header.startswith(b"-"):
        raise _Refused(f"SYNC refused: {_text(header)}")
    if not header.startswith(b"$"):
        raise _Refused(f"SYNC: unexpected reply {_text(header)}")
    sink = _Sink(handle)
    if header.startswith(b"$EOF:"):
        mark = header[5:]
        if len(mark) != EOF_MARK_BYTES:
            raise _Refused(f"SYNC: bad EOF mark in {_text(header)}")
        await _until_mark(reader, mark, sink)
    else:
        try:
            length = int(header[1:])
        except ValueError:
            raise _Refused(f"SYNC: bad payload length in {_text(header)}") from None
        await _exactly(reader, length, sink)
    await sink.flush()
    return sink.size, sink.hasher.hexdigest()


class _Sink:
    """The destination file, with the running size and SHA-256 of what was written. Reads come
    in pieces of up to 64 KiB; they are written (off the event loop) by the CHUNK_BYTES."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    async def write(self, data: bytes) -> None:
        if data:
            self.pending.append(data)
            self.pending_bytes += len(data)
            self.size += len(data)
        if self.pending_bytes >= CHUNK_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self.handle.write(data)
        self.hasher.update(data)


async def _exactly(reader: asyncio.StreamReader, length: int, sink: _Sink) -> None:
    remaining = length
    while remaining > 0:
        chunk = await reader.read(min(CHUNK_BYTES, remaining))
        if not chunk:
            raise EOFError(f"connection closed after {length - remaining} of {length} bytes")
        remaining -= len(chunk)
        await sink.write(chunk)


async def _until_mark(reader: asyncio.StreamReader, mark: bytes, sink: _Sink) -> None:
    """Copy until the stream ends with ``mark``: the node sends nothing after it until the
    replica acknowledges (and with rdb-only it closes), so the mark ends the last read."""
    held = b""  # the last EOF_MARK_BYTES received: the mark, or data when more follows
    while True:
        chunk = await reader.read(CHUNK_BYTES)
        if not chunk:
            raise EOFError(f"connection closed after {sink.size + len(held)} bytes, no EOF mark")
        data = held + chunk
        if data.endswith(mark):
            await sink.write(data[:-EOF_MARK_BYTES])
            return
        await sink.write(data[:-EOF_MARK_BYTES])
        held = data[-EOF_MARK_BYTES:]
