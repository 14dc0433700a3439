"""Keys moved by MIGRATE from a loaded snapshot into their owner (real standalone servers of
both families): never REPLACE. A key already on the target stops a first move with the server's
BUSYKEY; a move again after an interrupted one keeps the key there (a client may have written
it since) and drops the source's copy, and every other key arrives with its TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkube.admin.connections import AdminError, NodeClient, migrate_auth
from redkube.admin.snapshots import move_all_keys
from redkube.model.addresses import Address
from tests.admin import standalone
from tests.admin.standalone import HOST, KEYS, Node, fill

PORTS = range(7800, 7900)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[standalone.Servers]:
    started = standalone.Servers(tmp_path, PORTS)
    try:
        yield started
    finally:
        started.stop()


def move(source: Node, target: Node, password: str, keep_existing: bool) -> int:
    async def run() -> int:
        client = NodeClient(Address(HOST, source.port), password, timeout=30.0, decode=False)
        try:
            return await move_all_keys(
                client, lambda _slot: Address(HOST, target.port), migrate_auth(password),
                lambda _: None,
                keep_existing,
            )  # fmt: skip
        finally:
            await client.close()

    return asyncio.run(run())


def test_a_key_already_there_stops_a_first_move_and_is_kept_by_a_move_again(
    servers: standalone.Servers, server: str
) -> None:
    source = servers.start_server(server)
    target = servers.start_server(server)
    fill(source.client)
    # The interrupted first attempt moved some keys; a client then wrote one of them.
    target.client.set("k:3", "written by a client since")
    target.client.set("k:5", "value-5")  # as the snapshot has it

    with pytest.raises(AdminError, match="BUSYKEY"):
        move(source, target, servers.password, keep_existing=False)
    assert target.client.get("k:3") == "written by a client since"

    source.client.flushall()
    fill(source.client)  # the loader holds the whole snapshot again
    snapshot_ttl = source.client.ttl("k:7")
    moved = move(source, target, servers.password, keep_existing=True)
    assert moved == KEYS + 2  # every key of the snapshot is in (kept ones counted)
    assert source.client.dbsize() == 0  # nothing left behind, busy copies dropped too
    assert target.client.dbsize() == KEYS + 2
    assert target.client.get("k:3") == "written by a client since"  # never overwritten
    assert target.client.get("k:5") == "value-5"
    assert target.client.lrange("k:2", 0, -1) == ["a", "2", "c"]
    assert 0 < target.client.ttl("k:7") <= snapshot_ttl  # TTLs kept
