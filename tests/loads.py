"""Client load for the length of a `with` block: a RedisCluster client doing SET and GET
(`Traffic`), and a writer doing SET then WAIT 1 (`AckedWriter`); afterwards, the checks that
no client command failed and no acknowledged write was lost."""

from __future__ import annotations

from collections.abc import Callable

from redis.cluster import RedisCluster

from tests.acked_writers import AckedLog, AckedWriter
from tests.datasets import Traffic, TrafficLog


class Load:
    def __init__(
        self, client: RedisCluster, connect: Callable[[], RedisCluster], max_seconds: float = 240
    ) -> None:
        self.traffic = Traffic(client, "traffic", max_seconds=max_seconds)
        self.acked = AckedWriter(connect, "acked", max_seconds=max_seconds)
        self.traffic_log = TrafficLog()
        self.acked_log = AckedLog()

    def __enter__(self) -> Load:
        self.traffic.start()
        self.acked.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.traffic_log = self.traffic.stop()
        self.acked_log = self.acked.stop()

    def assert_nothing_failed_or_lost(self, client: RedisCluster) -> None:
        """Both writers worked, neither saw a failed command, and every acknowledged write and
        the last 1000 keys the other wrote read back (through `client`)."""
        traffic, acked = self.traffic_log, self.acked_log
        assert not traffic.failed, traffic.failed[:5]
        assert traffic.writes > 50, traffic.writes
        assert acked.failed_commands == 0, acked
        assert len(acked.acknowledged) > 20, acked
        keys = list(acked.acknowledged)
        values = client.mget_nonatomic(keys)
        lost = [k for k, v in zip(keys, values, strict=True) if v != acked.acknowledged[k]]
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
        sample = list(traffic.written)[-1000:]
        assert client.mget_nonatomic(sample) == [traffic.written[k] for k in sample]
        print(f"load: {traffic.writes} writes, {acked}")
