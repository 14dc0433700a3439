"""A graceful failover under SET-then-WAIT writes: no client command fails.

Two real servers (Redis 7.0 and Valkey 9), one shard with one replica. A writer on one connection
to the master does SET then WAIT 1 without pause, the way the rolling-update tests count
acknowledged writes. The shard is handed back and forth by redkube's Failover action (the one a
rolling update runs). Without the hand-over's write pause, a WAIT blocked at the role change is
answered "UNBLOCKED force unblock ... (master -> replica?)", a failed command (seen in CI).
Checked: zero failed commands, every acknowledged key on the final master and its replica.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisError

from redkube.admin.connections import ClientPool
from redkube.admin.executing import execute
from redkube.model.actions import Failover, FailoverMode
from redkube.model.addresses import Address
from tests.clusters import wait_for
from tests.writers import Background

HOSTS = ("127.67.0.1", "127.67.0.2")
PORT = 6379
HANDOVERS = 8
# A master votes for a replica of the same master at most once per two node timeouts: the
# hand-overs are spaced by that much. (With one master, it is the one that votes.)
NODE_TIMEOUT_MS = 1000


@pytest.fixture
def shard(server: str, tmp_path: Path) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    processes = []
    for host in HOSTS:
        work = tmp_path / host
        work.mkdir()
        command = [
            server, "--bind", host, "--port", str(PORT), "--protected-mode", "no",
            "--cluster-enabled", "yes", "--cluster-announce-ip", host, "--bind-source-addr", host,
            "--cluster-config-file", str(work / "nodes.conf"), "--dir", str(work), "--save", "",
            "--appendonly", "no", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--logfile", str(work / "log"),
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    clients = [redis.Redis(host=h, port=PORT, socket_timeout=5) for h in HOSTS]
    try:
        for client in clients:
            wait_for(lambda c=client: _answers(c), 20, f"{client} to answer")
        first, second = clients
        first.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        first.execute_command("CLUSTER", "MEET", HOSTS[1], PORT)
        master_id = first.execute_command("CLUSTER", "MYID")
        wait_for(
            lambda: (
                master_id.decode() in second.execute_command("CLUSTER", "NODES").decode() or None
            ),
            20,
            "the replica to know the master",
        )
        second.execute_command("CLUSTER", "REPLICATE", master_id)
        wait_for(lambda: _linked(second) or None, 30, "the replica to sync")
        wait_for(lambda: first.cluster("INFO")["cluster_state"] == "ok" or None, 30, "state ok")
        yield first, second
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _answers(client: redis.Redis) -> bool | None:
    try:
        return bool(client.ping())
    except RedisError:
        return None


def _linked(client: redis.Redis) -> bool:
    return client.info("replication").get("master_link_status") == "up"


class WaitWriter(Background):
    """SET then WAIT 1 in one pipeline on one connection to whichever node is master; MOVED
    sends it to the other node. Counts failed commands; keeps the acknowledged keys."""

    def __init__(self) -> None:
        super().__init__()
        self.acknowledged: dict[str, str] = {}
        self.failed: list[str] = []
        self.moved = 0

    def _run(self) -> None:
        deadline = time.monotonic() + 300
        target = 0
        client = redis.Redis(host=HOSTS[target], port=PORT, socket_timeout=10)
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            key = f"k:{n}"
            pipe = client.pipeline(transaction=False)
            pipe.set(key, n)
            pipe.execute_command("WAIT", 1, 500)
            try:
                _, replicas = pipe.execute()
            except MovedError:
                self.moved += 1
                client.close()
                target = 1 - target
                client = redis.Redis(host=HOSTS[target], port=PORT, socket_timeout=10)
                continue
            except (RedisError, RedisConnectionError) as error:
                self.failed.append(f"{key}: {error}")
                time.sleep(0.01)
                continue
            if int(replicas) >= 1:
                self.acknowledged[key] = str(n)
            n += 1
        client.close()


def test_graceful_failovers_under_wait_writes_fail_no_command(
    shard: tuple[redis.Redis, redis.Redis],
) -> None:
    writer = WaitWriter()
    writer.start()

    async def hand_back_and_forth() -> None:
        pool = ClientPool(None)
        try:
            for turn in range(HANDOVERS):
                replica = Address(HOSTS[(turn + 1) % 2], PORT)
                await execute(Failover(replica, FailoverMode.DEFAULT, "test"), pool)
                # Let the old master become the replica, and the writer follow the move and
                # write a while, before the next one.
                old_master = shard[turn % 2]
                before = len(writer.acknowledged)
                started = time.monotonic()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not (
                    len(writer.acknowledged) >= before + 200
                    and _linked(old_master)
                    and time.monotonic() > started + 2.5 * NODE_TIMEOUT_MS / 1000
                ):
                    await asyncio.sleep(0.01)
        finally:
            await pool.close()

    try:
        asyncio.run(hand_back_and_forth())
    finally:
        writer.halt()

    assert writer.failed == [], writer.failed[:5]
    assert writer.moved >= HANDOVERS, writer.moved  # the writer followed every hand-over
    master, replica = shard  # after an even number of hand-overs, the first is master again
    assert master.info("replication")["role"] == "master"
    wait_for(
        lambda: (
            replica.info("replication").get("master_repl_offset")
            == master.info("replication").get("master_repl_offset")
            or None
        ),
        30,
        "the replica to catch up",
    )
    keys = list(writer.acknowledged)
    for node in (master, replica):
        if node is replica:
            node.execute_command("READONLY")
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        values = pipe.execute()
        assert [v.decode() if v else None for v in values] == list(writer.acknowledged.values())
