"""A bounded background writer: continuous writes through redis-py's RedisCluster."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from redis.cluster import RedisCluster
from redis.exceptions import RedisError


@dataclass
class WriteLog:
    acknowledged: dict[str, str] = field(default_factory=dict)
    failures: int = 0
    successes_after: list[float] = field(default_factory=list)


class Background:
    """A daemon thread that runs ``_run`` (which must watch ``_stop``) until ``halt()``."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "writer did not stop"

    def _run(self) -> None:
        raise NotImplementedError


class Writer(Background):
    """Writes ``<prefix>:<n>`` keys in a loop until stopped or ``max_seconds`` pass."""

    def __init__(self, client: RedisCluster, prefix: str, max_seconds: float = 60.0) -> None:
        super().__init__()
        self.client = client
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.log = WriteLog()
        self.mark: float | None = None

    def stop(self) -> WriteLog:
        self.halt()
        return self.log

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            key = f"{self.prefix}:{n}"
            try:
                self.client.set(key, str(n))
            except RedisError:
                self.log.failures += 1
                time.sleep(0.01)
                continue
            self.log.acknowledged[key] = str(n)
            if self.mark is not None:
                self.log.successes_after.append(time.monotonic() - self.mark)
            n += 1
