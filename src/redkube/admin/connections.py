"""The one module that speaks to Redis (redis-py's asyncio client).

Each method mirrors a Redis command and returns raw text or plain values; parsing happens in
``replies``. Transient errors are retried with backoff here, permanent ones become AdminError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redkube.model.addresses import Address
from redkube.model.slots import SlotRange
from redkube.model.tls import ClientTls

T = TypeVar("T")

TRANSIENT_PREFIXES = ("LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")


class AdminError(Exception):
    """A Redis command failed for good; the message names the node and the command."""


class Unreachable(AdminError):
    """The node did not answer (refused, timed out, reset)."""


def is_transient(error: Exception) -> bool:
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError)):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(TRANSIENT_PREFIXES)


class NodeClient:
    """``decode``: replies as text; without it as bytes (key names and values are bytes)."""

    def __init__(
        self,
        address: Address,
        password: str | None,
        timeout: float = 1.0,
        decode: bool = True,
        tls: ClientTls | None = None,
        username: str | None = None,
    ) -> None:
        """``username``: an ACL user (None: the default user)."""
        self.address = address
        secure: dict[str, object] = {}
        if tls is not None:
            secure = {
                "ssl": True,
                "ssl_ca_certs": tls.ca,
                "ssl_certfile": tls.cert,
                "ssl_keyfile": tls.key,
            }
        self._redis = aioredis.Redis(
            host=address.host,
            port=address.port,
            username=username,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=decode,
            retry=Retry(NoBackoff(), 0),
            **secure,  # type: ignore[arg-type]
        )
        # Keep INFO as raw text: ``replies`` parses it the same way for every server version.
        self._redis.response_callbacks.pop("INFO", None)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, name: str, make: Callable[[], Awaitable[T]], attempts: int) -> T:
        delay = 0.02
        for attempt in range(1, attempts + 1):
            try:
                return await make()
            except (RedisError, OSError) as error:
                if not is_transient(error):
                    raise AdminError(f"{self.address}: {name}: {error}") from error
                if attempt == attempts:
                    kind = Unreachable if not isinstance(error, ResponseError) else AdminError
                    raise kind(
                        f"{self.address}: {name}: {error or type(error).__name__}"
                    ) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    async def command(self, *args: str | int | bytes, attempts: int = 4) -> object:
        name = " ".join(str(a) for a in args[:2])

        async def run() -> object:
            reply: object = await self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
            return reply

        return await self._call(name, run, attempts)

    async def pipeline(self, commands: Iterable[tuple[str | int | bytes, ...]]) -> list[object]:
        """Send many commands in one round trip (not a transaction); each reply, or the
        ResponseError it raised, in order. One attempt: the callers re-observe and retry."""
        calls = list(commands)

        async def run() -> list[object]:
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                pipe.execute_command(*call)
            replies: list[object] = await pipe.execute(raise_on_error=False)
            return replies

        if not calls:
            return []
        first = " ".join(
            a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in calls[0][:2]
        )
        return await self._call(f"{len(calls)} x {first}", run, attempts=1)

    async def text(self, *args: str | int, attempts: int = 4) -> str:
        return str(await self.command(*args, attempts=attempts))

    async def snapshot(self) -> tuple[str, str, str, int]:
        """CLUSTER NODES, CLUSTER INFO, INFO and DBSIZE in one round trip; one attempt only."""

        async def run() -> tuple[str, str, str, int]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.execute_command("CLUSTER", "NODES")
            pipe.execute_command("CLUSTER", "INFO")
            pipe.execute_command("INFO", "everything")
            pipe.execute_command("DBSIZE")
            nodes, info_cluster, info, dbsize = await pipe.execute()
            return str(nodes), str(info_cluster), str(info), int(dbsize)

        return await self._call("observe", run, attempts=1)

    async def cluster_set_config_epoch(self, epoch: int) -> None:
        try:
            await self.command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        except AdminError as error:
            if "epoch" not in str(error).lower():
                raise

    async def cluster_addslotsrange(self, ranges: Iterable[SlotRange]) -> None:
        args: list[str | int] = ["CLUSTER", "ADDSLOTSRANGE"]
        for slot_range in ranges:
            args += [slot_range.start, slot_range.end]
        await self.command(*args)

    async def cluster_meet(self, target: Address) -> None:
        await self.command("CLUSTER", "MEET", target.host, target.port)

    async def cluster_replicate(self, master_id: str) -> None:
        await self.command("CLUSTER", "REPLICATE", master_id)

    async def cluster_failover(self, mode: str | None) -> None:
        await self.command("CLUSTER", "FAILOVER", *([mode.upper()] if mode else []))

    async def cluster_forget(self, node_id: str) -> None:
        await self.command("CLUSTER", "FORGET", node_id)

    async def cluster_reset(self, hard: bool) -> None:
        await self.command("CLUSTER", "RESET", "HARD" if hard else "SOFT")

    async def config_get(self, keys: Iterable[str]) -> dict[str, str]:
        """CONFIG GET of several keys at once (Redis 7+); keys the server does not know are
        absent from the answer."""
        wanted = list(keys)
        if not wanted:
            return {}
        reply = await self.command("CONFIG", "GET", *wanted)
        if isinstance(reply, dict):
            return {str(k).lower(): str(v) for k, v in reply.items()}
        if isinstance(reply, list):
            pairs = zip(reply[::2], reply[1::2], strict=True)
            return {str(k).lower(): str(v) for k, v in pairs}
        raise AdminError(f"{self.address}: CONFIG GET: unexpected reply {reply!r}")

    async def config_set(self, key: str, value: str) -> None:
        await self.command("CONFIG", "SET", key, value)

    async def role(self) -> str:
        reply = await self.command("ROLE")
        if isinstance(reply, list) and reply:
            return str(reply[0])
        return str(reply)


# Moving keys waits for the target to store them (MIGRATE): a big key takes longer than the 1 s
# every other command gets.
MIGRATION_TIMEOUT_S = 30.0


def migrate_auth(password: str | None, username: str | None = None) -> tuple[str, ...]:
    """MIGRATE's AUTH or AUTH2 arguments (none without a password)."""
    if not password:
        return ()
    return ("AUTH2", username, password) if username else ("AUTH", password)


class ClientPool:
    """One NodeClient per address, reused across reconcile passes; one with a longer timeout
    for moving slots; and one of those that keeps key names as bytes (a key name need not be
    text)."""

    def __init__(
        self,
        password: str | None,
        timeout: float = 1.0,
        tls: ClientTls | None = None,
        username: str | None = None,
    ) -> None:
        self.password = password
        self.username = username
        self.tls = tls
        self._timeout = timeout
        self._clients: dict[Address, NodeClient] = {}
        self._slow: dict[Address, NodeClient] = {}
        self._keys: dict[Address, NodeClient] = {}
        self._retired: list[NodeClient] = []

    def use_credentials(self, password: str, username: str | None) -> None:
        """Clients made from now on authenticate as ``username`` (None: the default user) with
        ``password``; those already open go on as they were (still accepted while a rotation's
        grace period lasts, or until the default user is switched off) until close()."""
        self.password, self.username = password, username
        self._retired += [*self._clients.values(), *self._slow.values(), *self._keys.values()]
        self._clients, self._slow, self._keys = {}, {}, {}

    def migrate_auth(self) -> tuple[str, ...]:
        """MIGRATE's credentials for the target node: the same as the pool's."""
        return migrate_auth(self.password, self.username)

    def client(self, address: Address) -> NodeClient:
        found = self._clients.get(address)
        if found is None:
            found = self._clients[address] = NodeClient(
                address, self.password, self._timeout, tls=self.tls, username=self.username
            )
        return found

    def migration_client(self, address: Address) -> NodeClient:
        found = self._slow.get(address)
        if found is None:
            found = self._slow[address] = NodeClient(
                address, self.password, MIGRATION_TIMEOUT_S, tls=self.tls, username=self.username
            )
        return found

    def key_client(self, address: Address) -> NodeClient:
        found = self._keys.get(address)
        if found is None:
            found = self._keys[address] = NodeClient(
                address,
                self.password,
                MIGRATION_TIMEOUT_S,
                decode=False,
                tls=self.tls,
                username=self.username,
            )
        return found

    async def close(self) -> None:
        clients = [
            *self._clients.values(), *self._slow.values(), *self._keys.values(), *self._retired
        ]  # fmt: skip
        self._clients, self._slow, self._keys, self._retired = {}, {}, {}, []
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
