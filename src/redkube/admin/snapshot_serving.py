"""An RDB file loaded into a server over the network, by acting as that server's master.

The operator cannot copy files into a Pod, so it turns `rdb_streaming` around: a
`SnapshotServer` listens, the target is told ``REPLICAOF <operator> <port>``, connects as a
replica, and gets the file as a full resynchronization. What replicas send (Redis 7.0.15,
Valkey 9.0.0 and 9.1.2), all answered ``+OK`` unless said otherwise:

- ``PING`` (answered ``+PONG``); ``AUTH <masterauth>`` when it has one (any password passes);
- ``REPLCONF listening-port <port>``, ``REPLCONF capa eof capa psync2`` (Valkey with
  ``dual-channel-replication-enabled yes``, off by default, adds ``capa dual-channel``: our
  ``+FULLRESYNC`` makes it fall back to a plain sync); Valkey then ``REPLCONF version <its own>``;
- ``PSYNC <its replid> <offset + 1>``, answered ``+FULLRESYNC <REPLICATION_ID> 0`` and the
  payload (an older replica's ``SYNC`` gets the payload alone);
- once it has loaded the payload, ``REPLCONF ACK <offset>`` every second (never answered);
  while it loads, at most newlines.

The payload is ``$<size>\\r\\n`` and the file's bytes, sent with ``loop.sendfile`` (the kernel's
sendfile, or chunked reads where it cannot be used): files may be gigabytes. The link then
stays open, with a ``PING`` every `PING_INTERVAL_S` (a master's ``repl-ping-replica-period``)
so the replica's ``repl-timeout`` (60 s) never drops it. A replica keeps its data when the link
closes (it only retries the link); `load_into` makes it a master (``REPLICAOF NO ONE``) once it
has loaded.

How it shows, in the replica's ``INFO replication`` and ``INFO persistence``, and here:

- loaded: ``role:slave``, ``master_host``/``master_port`` ours, ``master_link_status:up``,
  ``loading:0`` (and ``async_loading:0``). Before that ``master_sync_in_progress:1`` while it
  receives and loads, ``loading:1`` while it loads. Here: its first ``REPLCONF ACK``
  (`SnapshotServer.loaded`), which a replica sends only once it has loaded;
- refused (an RDB newer than the server: Redis 7.0 and a Valkey 9 ``VALKEY080`` file, or any of
  RDB version 11): the replica logs ``Wrong signature trying to load DB from file`` or ``Can't
  handle RDB format version 11``, then ``Failed trying to load the MASTER synchronization DB
  from disk`` (``from socket`` with ``repl-diskless-load`` swapdb/on-empty-db), closes the link
  and reconnects at once, forever: a full sync every few milliseconds for a small file. INFO
  shows nothing better than ``master_link_status:down`` and ``master_sync_in_progress``
  flipping between 0 and 1, which a poll cannot tell from a slow first sync. Here it is plain:
  the replica closed the connection after asking for a sync and before acknowledging a
  payload (`SnapshotServer.dropped`), which a replica that loaded never does unless told to
  leave; `load_into` fails on the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from redkube.admin.connections import AdminError, NodeClient
from redkube.admin.replies import parse_info
from redkube.model.addresses import Address

log = logging.getLogger(__name__)

# Our replication ID in +FULLRESYNC: any 40 hex characters do, the replica only keeps it.
REPLICATION_ID = "7265646b7562652d736e617073686f742d000001"
PING_INTERVAL_S = 10.0
STOP_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.05
MAX_LINE_BYTES = 64 * 1024
MAX_BULK_BYTES = 1024 * 1024
HANDSHAKES_KEPT = 32


ACKS = (b"ACK", b"GETACK")  # REPLCONF subcommands a replica sends without waiting


class _Closed(Exception):
    """The replica closed the connection, or sent what is not a command."""


class SnapshotServer:
    """Serves one RDB file to every replica that connects, as a master's full resync.

    Counters: ``connections`` (accepted), ``served`` (payloads sent completely), ``loaded``
    (replicas that acknowledged the payload: they send ``REPLCONF ACK`` only once loaded),
    ``dropped`` (replicas that asked for a sync and closed the connection before acknowledging
    it: a refused payload, see the module's docstring). ``handshakes`` keeps the commands of the
    last connections (up to the sync request) for diagnostics."""

    def __init__(self, snapshot: Path) -> None:
        self.snapshot = snapshot
        self.port: int | None = None
        self.connections = 0
        self.served = 0
        self.loaded = 0
        self.dropped = 0
        self.handshakes: list[list[str]] = []
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = False

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); return the port bound."""
        if self._listener is not None:
            raise RuntimeError("SnapshotServer already started")
        if not self.snapshot.is_file():
            raise AdminError(f"no snapshot file at {self.snapshot}")
        self._listener = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE_BYTES)
        self.port = int(self._listener.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection, within about 2 x STOP_TIMEOUT_S."""
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        # Cancelled, not aborted: a transport is detached from its socket while sendfile runs.
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()  # each handler aborts its connection on the way out
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for writer in list(self._writers):
            writer.transport.abort()
        if self._listener is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listener.wait_closed(), STOP_TIMEOUT_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:
            writer.transport.abort()
            return
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        peer = writer.get_extra_info("peername")
        handshake: list[str] = []
        self.handshakes = [*self.handshakes[-(HANDSHAKES_KEPT - 1) :], handshake]
        synced = acknowledged = False
        try:
            synced = await self._handshake(reader, writer, handshake)
            if not synced:
                return
            await self._send_payload(writer)
            self.served += 1
            log.info("snapshot %s sent to %s", self.snapshot, peer)
            pinger = asyncio.create_task(self._ping(writer))
            try:
                await _until_acknowledged(reader)
                acknowledged = True
                self.loaded += 1
                log.info("%s loaded snapshot %s", peer, self.snapshot)
                while True:  # ACKs until the replica leaves or we stop
                    await _read_command(reader)
            finally:
                pinger.cancel()
        except asyncio.CancelledError:
            # Only stop() cancels a handler (one the aborted connection did not end): nothing
            # awaits it, and asyncio would log a cancelled callback of start_server as an error.
            if not self._stopping:
                raise
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, OSError) as error:
            if synced and not acknowledged and not self._stopping:
                self.dropped += 1
                log.warning("replica %s left after asking for a sync: %r", peer, error)
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: list[str]
    ) -> bool:
        """Answer commands until PSYNC or SYNC (True); False if the peer just leaves."""
        while True:
            try:
                command = await _read_command(reader)
            except _Closed:
                return False
            if not command:
                continue  # a newline: a replica's keep-alive
            name = command[0].upper()
            if name == b"REPLCONF" and len(command) > 1 and command[1].upper() in ACKS:
                continue  # sent without waiting for a reply
            text = " ".join(part.decode(errors="replace") for part in command)
            handshake.append("AUTH ***" if name == b"AUTH" else text[:200])
            log.debug("replica sent %s", handshake[-1])
            if name == b"PSYNC":
                writer.write(b"+FULLRESYNC %s 0\r\n" % REPLICATION_ID.encode())
                return True
            if name == b"SYNC":
                return True
            writer.write(b"+PONG\r\n" if name == b"PING" else b"+OK\r\n")
            await writer.drain()

    async def _send_payload(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with self.snapshot.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            writer.write(b"$%d\r\n" % size)
            await writer.drain()
            if size:
                sent = await loop.sendfile(writer.transport, handle, 0, size)
                if sent != size:
                    raise ConnectionError(f"sent {sent} of {size} bytes")
        await writer.drain()

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        """A master's PING every PING_INTERVAL_S, so the replica's repl-timeout never hits."""
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await asyncio.sleep(PING_INTERVAL_S)
                writer.write(b"PING\r\n")
                await writer.drain()


async def _until_acknowledged(reader: asyncio.StreamReader) -> None:
    """Return on the replica's first ``REPLCONF ACK``: it sends those (each second) only once
    it has loaded the payload. Before that it sends nothing but newlines while it loads."""
    while True:
        command = await _read_command(reader)
        if len(command) > 1 and [part.upper() for part in command[:2]] == [b"REPLCONF", b"ACK"]:
            return


async def _read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One command: a RESP array of bulk strings, or an inline command (an empty list for a
    blank line)."""
    try:
        line = (await reader.readuntil(b"\n")).rstrip(b"\r\n")
        if not line.startswith(b"*"):
            return line.split()
        parts: list[bytes] = []
        for _ in range(_number(line)):
            header = (await reader.readuntil(b"\n")).rstrip(b"\r\n")
            if not header.startswith(b"$"):
                raise _Closed(f"expected a bulk string, got {header[:50]!r}")
            size = _number(header)
            if size > MAX_BULK_BYTES:
                raise _Closed(f"bulk string of {size} bytes")
            parts.append((await reader.readexactly(size + 2))[:-2])
        return parts
    except asyncio.IncompleteReadError as error:
        raise _Closed("closed by the peer") from error
    except asyncio.LimitOverrunError as error:
        raise _Closed("line too long") from error


def _number(header: bytes) -> int:
    try:
        value = int(header[1:])
    except ValueError:
        raise _Closed(f"bad length in {header[:50]!r}") from None
    if value < 0:
        raise _Closed(f"negative length in {header[:50]!r}")
    return value


async def load_into(
    client_host: str,
    client_port: int,
    password: str | None,
    advertised_host: str,
    server: SnapshotServer,
    timeout_s: float,
) -> int:
    """Load ``server``'s snapshot into the standalone server at ``client_host:client_port``:
    ``REPLICAOF advertised_host <server's port>``, wait (polling every POLL_INTERVAL_S) until it
    has loaded the payload, ``REPLICAOF NO ONE``; return its DBSIZE.

    The target's data is replaced by the file's. ``server`` must be started, and reachable
    from the target at ``advertised_host``. Raises AdminError when the target refuses the
    payload (it dropped the link after asking for a sync: see the module's docstring), or has
    not loaded it within ``timeout_s``; the target is then told ``REPLICAOF NO ONE`` (best
    effort) so it stops asking for it again."""
    if server.port is None:
        raise AdminError("load_into: the SnapshotServer is not started")
    address = Address(client_host, client_port)
    client = NodeClient(address, password, timeout=5.0)
    loaded_before, dropped, connections = server.loaded, server.dropped, server.connections
    promoted = False
    state = "no INFO yet"
    try:
        async with asyncio.timeout(timeout_s):
            await client.command("REPLICAOF", advertised_host, server.port)
            while True:
                info = parse_info(await client.text("INFO", "replication", "persistence"))
                state = ", ".join(
                    f"{key}:{info.get(key, '?')}"
                    for key in ("master_link_status", "master_sync_in_progress", "loading")
                )
                if _loaded(info, advertised_host, server.port) and server.loaded > loaded_before:
                    break
                if server.dropped > dropped:
                    raise AdminError(
                        f"{address} could not load the snapshot (an RDB newer than the server?):"
                        " it closed the replication link after asking for a sync; see its log"
                    )
                await asyncio.sleep(POLL_INTERVAL_S)
            await client.command("REPLICAOF", "NO", "ONE")
            promoted = True
            return int(str(await client.command("DBSIZE")))
    except TimeoutError as error:
        if server.connections == connections:
            state += f"; it never connected to {advertised_host}:{server.port}"
        raise AdminError(f"{address}: snapshot not loaded in {timeout_s} s ({state})") from error
    finally:
        if not promoted:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.command("REPLICAOF", "NO", "ONE", attempts=1), 5)
        await client.close()


def _loaded(info: dict[str, str], host: str, port: int) -> bool:
    return (
        info.get("role") == "slave"
        and info.get("master_host") == host
        and info.get("master_port") == str(port)
        and info.get("master_link_status") == "up"
        and info.get("loading", "0") == "0"
        and info.get("async_loading", "0") == "0"
    )
