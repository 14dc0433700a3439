"""A background writer whose writes count only once a replica has them: SET then WAIT 1 on the
same connection. It finds the cluster again from the record's current addresses whenever a
command fails, as a client behind a Kubernetes Service would after every Pod got a new IP."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.writers import Background

WAIT_TIMEOUT_MS = 500
FAILURE_PAUSE_S = 0.02


@dataclass
class AckedLog:
    acknowledged: dict[str, str] = field(default_factory=dict)
    failed_commands: int = 0  # a SET or WAIT that raised (refused, timed out, MOVED, CLUSTERDOWN)
    unacknowledged: int = 0  # SET succeeded but no replica confirmed it within the WAIT timeout
    failed_connects: int = 0  # the cluster client could not be built from the record
    # MOVED or ASK: the key's slot moved (resharding); this writer talks to one node on purpose
    # (WAIT must follow SET on one connection), so it asks the cluster again and retries the key.
    redirected: int = 0
    errors: list[str] = field(default_factory=list)  # the first failed commands' errors
    # A pooled connection found closed (its node restarted since this client last used it, as
    # an old master does in a rolling update after it handed its shard over): the writer
    # connects again and sends the key once more, as RedisCluster does with its own commands.
    # Nothing was written (a node that shut down took no SET); a second failure counts above.
    # So is a connect that timed out (nothing was sent): a Pod gone with its IP does not refuse,
    # it never answers, and a client that knew it as a slot's master before a hand-over asks the
    # cluster again, as RedisCluster does on its own TimeoutError.
    reconnected: int = 0

    def __repr__(self) -> str:
        return (
            f"AckedLog({len(self.acknowledged)} acknowledged, {self.failed_commands} failed "
            f"{self.errors[:5]}, {self.unacknowledged} unacknowledged, {self.failed_connects} "
            f"failed connects, {self.redirected} redirected, {self.reconnected} reconnected)"
        )

    def snapshot(self) -> dict[str, str]:
        return self.acknowledged.copy()

    def lost_in(self, client: RedisCluster) -> int:
        """How many acknowledged keys do not read back through `client` with their value."""
        keys = list(self.acknowledged)
        values = client.mget_nonatomic(keys) if keys else []
        return sum(1 for k, v in zip(keys, values, strict=True) if v != self.acknowledged[k])


def unsent(error: Exception) -> bool:
    """Whether the connection was found closed or could not be made (redis-py says "Timeout
    connecting" for the latter, not a timeout waiting for a reply): the key was not written."""
    if isinstance(error, RedisTimeoutError):
        return "Timeout connecting" in str(error)
    return isinstance(error, RedisConnectionError)


class AckedWriter(Background):
    """Writes ``<prefix>:<n>`` keys until stopped or ``max_seconds`` pass; ``connect`` builds a
    fresh cluster client (from the addresses the cluster has now)."""

    def __init__(
        self, connect: Callable[[], RedisCluster], prefix: str, max_seconds: float = 170.0
    ) -> None:
        super().__init__()
        self.connect = connect
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.log = AckedLog()

    def stop(self) -> AckedLog:
        self.halt()
        return self.log

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        client: RedisCluster | None = None
        n = 0
        retrying = False
        while not self._stop.is_set() and time.monotonic() < deadline:
            if client is None:
                try:
                    client = self.connect()
                except (RedisError, RedisClusterException, OSError):
                    self.log.failed_connects += 1
                    time.sleep(FAILURE_PAUSE_S)
                    continue
            key = f"{self.prefix}:{n}"
            try:
                replicas = self._set_and_wait(client, key, str(n))
            except (MovedError, AskError):
                self.log.redirected += 1
                client.close()
                client = None
                time.sleep(FAILURE_PAUSE_S)
                continue
            except (RedisError, RedisClusterException, OSError) as error:
                client.close()
                client = None
                if unsent(error) and not retrying:
                    self.log.reconnected += 1
                    retrying = True
                    continue
                self.log.failed_commands += 1
                if len(self.log.errors) < 20:
                    self.log.errors.append(f"{key}: {type(error).__name__}: {error}")
                retrying = False
                time.sleep(FAILURE_PAUSE_S)
                continue
            retrying = False
            if replicas >= 1:
                self.log.acknowledged[key] = str(n)
            else:
                self.log.unacknowledged += 1
            n += 1  # an unacknowledged key may be lost; the next write uses a new one
        if client is not None:
            client.close()

    @staticmethod
    def _set_and_wait(client: RedisCluster, key: str, value: str) -> int:
        """SET and WAIT 1 in one round trip on one connection to the key's master (WAIT counts
        the replicas that have this connection's writes)."""
        node = client.get_node_from_key(key)
        connection = client.get_redis_connection(node)
        pipe = connection.pipeline(transaction=False)
        pipe.set(key, value)
        pipe.execute_command("WAIT", 1, WAIT_TIMEOUT_MS)
        written, replicas = pipe.execute()
        if written is not True:
            raise RedisError(f"SET {key} answered {written!r}")
        return int(replicas)
