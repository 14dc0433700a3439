"""Data sets of every type, and their exact copies (DUMP, TTL), read back through redis-py."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from redis.cluster import RedisCluster

from tests.writers import Background

TYPES = ("string", "hash", "list", "set", "zset", "stream", "ttl")
CHUNK = 2000
TTL_S = 3600


def fill_every_type(client: RedisCluster, count: int, prefix: str = "data") -> list[str]:
    """``count`` keys spread over strings, hashes, lists, sets, sorted sets, streams and strings
    with a TTL; their names."""
    keys: list[str] = []
    for start in range(0, count, CHUNK):
        pipe = client.pipeline()
        for i in range(start, min(start + CHUNK, count)):
            kind = TYPES[i % len(TYPES)]
            key = f"{prefix}:{kind}:{i}"
            keys.append(key)
            if kind == "string":
                pipe.set(key, f"v{i}" * 10)
            elif kind == "hash":
                pipe.hset(key, mapping={"a": i, "b": f"x{i}", "c": "y" * 20})
            elif kind == "list":
                pipe.rpush(key, *(f"e{j}" for j in range(5)))
            elif kind == "set":
                pipe.sadd(key, *(f"m{j}" for j in range(5)))
            elif kind == "zset":
                pipe.zadd(key, {f"m{j}": j * 1.5 for j in range(5)})
            elif kind == "stream":
                pipe.xadd(key, {"field": f"value{i}"}, id=f"{i + 1}-0")
            else:
                pipe.set(key, f"t{i}", ex=TTL_S)
        pipe.execute()
    return keys


def dumps(client: RedisCluster, keys: list[str]) -> dict[str, tuple[bytes | None, int]]:
    """Key -> (DUMP, PTTL) for each key. A set's DUMP lists its members in hash-table order,
    which a RESTORE may change (Redis 7.0 keeps small sets of strings as hash tables), so for a
    set the sorted members stand in for it."""
    found: dict[str, tuple[bytes | None, int]] = {}
    for start in range(0, len(keys), CHUNK):
        part = keys[start : start + CHUNK]
        pipe = client.pipeline()
        for key in part:
            if ":set:" in key:
                pipe.smembers(key)
            else:
                pipe.dump(key)
            pipe.pttl(key)
        replies = pipe.execute()
        for n, key in enumerate(part):
            value = replies[2 * n]
            if isinstance(value, set):
                value = repr(sorted(value)).encode() if value else None
            found[key] = (value, int(replies[2 * n + 1]))
    return found


def assert_same_data(
    before: dict[str, tuple[bytes | None, int]], after: dict[str, tuple[bytes | None, int]]
) -> None:
    """Every key there, with the same serialized value, and its TTL kept (it only runs down)."""
    missing = [k for k, (dump, _) in before.items() if after[k][0] is None and dump is not None]
    changed = [k for k, (dump, _) in before.items() if after[k][0] != dump]
    assert not missing, f"{len(missing)} of {len(before)} keys lost, e.g. {missing[:5]}"
    assert not changed, f"{len(changed)} of {len(before)} keys changed, e.g. {changed[:5]}"
    for key, (_, ttl) in before.items():
        if ttl >= 0:
            assert 0 < after[key][1] <= ttl, (key, ttl, after[key][1])
        else:
            assert after[key][1] == ttl, (key, ttl, after[key][1])


@dataclass
class TrafficLog:
    writes: int = 0
    reads: int = 0
    failed: list[str] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)
    # redis-py 8.1 follows an ASK to a node it has not discovered yet into an AttributeError
    # (RedisCluster._execute_command: get_node() gives None). During a classic slot migration to
    # a new master that is every client's first ASK to it. Counted apart, and the client asks
    # the cluster for its nodes again, as an application would have to.
    ask_to_unknown_node: int = 0
    # The longest time between two successful SETs (seconds), and when the last one returned.
    longest_gap_s: float = 0.0
    longest_gap_ended: float = 0.0  # wall clock (time.time()) of the SET that ended it
    last_write_at: float | None = None


class Traffic(Background):
    """SET a new key, then GET one written earlier, in a loop (bounded); every command that
    raises counts (redis-py follows MOVED and ASK itself)."""

    def __init__(self, client: RedisCluster, prefix: str, max_seconds: float = 240.0) -> None:
        super().__init__()
        self.client = client
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.log = TrafficLog()
        self.lock = threading.Lock()

    def stop(self) -> TrafficLog:
        self.halt()
        return self.log

    def _written_at(self, now: float) -> None:
        if (
            self.log.last_write_at is not None
            and now - self.log.last_write_at > self.log.longest_gap_s
        ):
            self.log.longest_gap_s = now - self.log.last_write_at
            self.log.longest_gap_ended = time.time()
        self.log.last_write_at = now

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            key = f"{self.prefix}:{n}"
            try:
                self.client.set(key, str(n))
                self._written_at(time.monotonic())
                self.log.writes += 1
                self.log.written[key] = str(n)
                earlier = f"{self.prefix}:{n // 2}"
                if earlier in self.log.written and self.client.get(earlier) != str(n // 2):
                    self.log.failed.append(f"GET {earlier}: wrong value")
                self.log.reads += 1
            except AttributeError as error:
                if "redis_connection" not in str(error):
                    raise
                self.log.ask_to_unknown_node += 1
                self.client.nodes_manager.initialize()
            except Exception as error:  # any error of the client counts, not only RedisError
                self.log.failed.append(
                    f"{time.monotonic():.3f} {key}: {type(error).__name__}: {error}"
                )
                time.sleep(0.01)
            n += 1
