"""planning.snapshots: where each shard's snapshot comes from; model.backups: the manifest."""

from __future__ import annotations

import pytest

from redkube.model.backups import BackupError, BackupManifest, ShardSnapshot
from redkube.model.slots import SlotRange
from redkube.planning.snapshots import snapshot_sources
from tests.planning.builders import Cluster


def test_the_replica_with_the_most_of_the_stream_and_the_master_only_when_alone() -> None:
    cluster = Cluster.healthy(3, 2)
    cluster.node(0, 1).offset = 900
    cluster.node(0, 2).offset = 1000
    cluster.node(1, 1).link_up = False  # syncing: not in sync
    cluster.node(1, 2).link_up = False
    sources = snapshot_sources(cluster.spec(), cluster.observe())
    assert [(s.node, s.role) for s in sources] == [
        ("demo-0-2", "replica"), ("demo-1-0", "master"), ("demo-2-2", "replica")
    ]  # fmt: skip
    assert sources[0].slots == (SlotRange(0, 5460),)


def test_a_shard_without_one_master_cannot_be_backed_up() -> None:
    cluster = Cluster.healthy(3, 1)
    cluster.stop(1, 0)
    with pytest.raises(BackupError, match="shard 1 has 0 masters"):
        snapshot_sources(cluster.spec(), cluster.observe())


def test_the_manifest_round_trips_and_refuses_another_format() -> None:
    shard = ShardSnapshot(
        0, (SlotRange(0, 99), SlotRange(200, 200)), "shard-0.rdb", 5, 10, "ab", "x-0-1",
        "replica", 1.0, 2.0,
    )  # fmt: skip
    manifest = BackupManifest("x", "valkey 9.1.2", (shard,), 1.0, 3.0, True, 12.5)
    data = manifest.to_json()
    assert data["shards"][0]["slots"] == ["0-99", "200"]
    assert BackupManifest.from_json(data) == manifest
    with pytest.raises(BackupError, match="format 2"):
        BackupManifest.from_json({**data, "format": 2})
    with pytest.raises(BackupError, match="not valid"):
        BackupManifest.from_json({k: v for k, v in data.items() if k != "cluster"})
