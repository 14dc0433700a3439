"""Backups on the test bed: a RedisClusterBackup taken by the operator into a real S3 server (the
Versity gateway) from each shard's replica, checked with tools we did not write (sha256sum on
the objects where the server keeps them, `redkube restore` into a local cluster of another
shard count, every key compared with DUMP); an operator killed during a backup; a schedule that
keeps exactly N."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster

from testbed import ControlPlane
from tests.clusters import LocalCluster, Redkube
from tests.conftest import REDIS, VALKEY, server_path
from tests.datasets import assert_same_data, dumps, fill_every_type
from tests.operator.conftest import Operator, metrics_url, scrape
from tests.operator.test_kubectl_workflow import cluster_client, password
from tests.operator.test_replica_scaling import ready_with
from tests.s3server import ACCESS, BUCKET, SECRET, S3Server, running_s3
from tests.testbed.kube import apply, events, eventually, get, pods
from tests.writers import Writer

Dumps = dict[str, tuple[bytes | None, int]]
KEYS = 200_000  # the restore test's data set (issue 15's size)

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: shop}
spec:
  shards: 3
  replicasPerShard: 1
  image: %(image)s
"""

BACKUP = """\
apiVersion: redkube.io/v1alpha1
kind: RedisClusterBackup
metadata: {name: %(name)s}
spec:
  cluster: shop
  s3:
    bucket: %(bucket)s
    prefix: shop
    endpoint: %(endpoint)s
    credentialsSecret: {name: s3-credentials}
"""
CONSISTENT_BACKUP = BACKUP + "  consistent: true\n"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with running_s3(tmp_path) as server:  # the operator runs on this host: 127.0.0.1 reaches it
        yield server


def credentials(cp: ControlPlane, namespace: str, secret: str = SECRET) -> None:
    cp.kubectl("create", "secret", "generic", "s3-credentials", "-n", namespace,
               f"--from-literal=AWS_ACCESS_KEY_ID={ACCESS}",
               f"--from-literal=AWS_SECRET_ACCESS_KEY={secret}")  # fmt: skip


def backup_status(cp: ControlPlane, namespace: str, name: str) -> dict[str, object]:
    status: dict[str, object] = get(cp, namespace, "redisclusterbackup", name).get("status") or {}
    return status


def finished(cp: ControlPlane, namespace: str, name: str) -> dict[str, object] | None:
    status = backup_status(cp, namespace, name)
    return status if status.get("phase") in ("Complete", "Failed") else None


def stored_objects(s3: S3Server, name: str) -> list[str]:
    folder = s3.root / BUCKET / "shop" / name
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def check_objects(s3: S3Server, name: str) -> dict[str, object]:
    """The manifest of the backup ``name``, its files checked where the server keeps them."""
    folder = s3.root / BUCKET / "shop" / name
    manifest: dict[str, object] = json.loads((folder / "manifest.json").read_text())
    shards = manifest["shards"]
    assert isinstance(shards, list)
    assert stored_objects(s3, name) == sorted(["manifest.json", *(str(s["file"]) for s in shards)])
    for shard in shards:
        path = folder / shard["file"]
        digest = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                                check=True).stdout.split()[0]  # fmt: skip
        assert digest == shard["sha256"] and path.stat().st_size == shard["size"], shard
    return manifest


def restore_locally(
    redkube: Redkube,
    s3: S3Server,
    location: str,
    kind: str,
    before: Dumps,
    keys: list[str],
    stored: int | None = None,
) -> None:
    """The objects restored by `redkube restore` into a local cluster of 2 shards: every key,
    type, value and TTL as ``before``."""
    redkube.env.update(s3.env())
    binary = server_path(kind)
    assert binary is not None
    done = redkube.ok("restore", "--from", location, "--name", "copy", "--shards", "2",
                      "--server", binary).stdout  # fmt: skip
    count = len(keys) if stored is None else stored
    assert f"restored {count:,} keys of {count:,}" in done, done
    copy = LocalCluster("copy", redkube.home / "copy")
    with copy.cluster_client() as client:
        assert_same_data(before, dumps(client, keys))


@pytest.mark.timeout(600)
@pytest.mark.namespace_prefix("op")
def test_a_redis_7_backup_from_the_replicas_restores_locally_into_another_shard_count(
    control_plane: ControlPlane, operator: Path, namespace: str, s3: S3Server, redkube: Redkube
) -> None:
    """Redis 7.0 here; Valkey 9.1 in the restore test below (its backup restored locally too)."""
    cp, image, kind = control_plane, "redis:7.0", REDIS
    credentials(cp, namespace)
    apply(cp, namespace, CLUSTER % {"image": image})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    with cluster_client(cp, namespace, password(cp, namespace)) as client:
        keys = fill_every_type(client, 3000)
        before = dumps(client, keys)

    apply(cp, namespace, BACKUP % {"name": "first", "bucket": BUCKET, "endpoint": s3.url})
    status = eventually(lambda: finished(cp, namespace, "first"), "the backup finished", 180)
    assert status["phase"] == "Complete", status
    manifest = check_objects(s3, "first")
    assert status["progress"] == "3/3" and status["keys"] == 3000, status
    assert status["location"] == f"s3://{BUCKET}/shop/first"
    assert status["size"] == sum(int(s["size"]) for s in manifest["shards"])  # type: ignore[attr-defined]
    assert status["server"] == manifest["server"] and str(manifest["server"]).startswith(kind)
    # every snapshot came from a replica: the masters served on, without a fork of their own
    assert {s["role"] for s in manifest["shards"]} == {"replica"}  # type: ignore[attr-defined]
    reasons = {e["reason"] for e in events(cp, namespace, "first")}
    assert "BackupComplete" in reasons, reasons

    restore_locally(redkube, s3, str(status["location"]), kind, before, keys)

    # The same name again: refused, the first backup's objects untouched.
    cp.kubectl("delete", "redisclusterbackup", "first", "-n", namespace)
    apply(cp, namespace, BACKUP % {"name": "first", "bucket": BUCKET, "endpoint": s3.url})
    again = eventually(lambda: finished(cp, namespace, "first"), "the second one finished", 60)
    assert again["phase"] == "Failed" and "already holds a backup" in str(again["message"])
    check_objects(s3, "first")


@pytest.mark.timeout(600)
@pytest.mark.namespace_prefix("full")
def test_an_operator_killed_during_a_backup_begins_it_again_without_its_leftovers(
    control_plane: ControlPlane, operator_process: Operator, namespace: str, s3: S3Server
) -> None:
    """The backup is Running while it waits for its cluster (not created yet): a state, not a
    moment. The operator is killed then; an object left by the lost attempt (a shard stored
    before the kill) is removed by the next operator, which takes the backup again."""
    cp = control_plane
    credentials(cp, namespace)
    apply(cp, namespace, BACKUP % {"name": "nightly", "bucket": BUCKET, "endpoint": s3.url})
    running = eventually(
        lambda: (
            (s := backup_status(cp, namespace, "nightly")).get("phase") == "Running"
            and "no RedisCluster" in str(s.get("message"))
            and s
        ),
        "the backup waits for its cluster",
        60,
    )
    assert running["attempts"] == 1, running
    operator_process.kill()
    leftover = s3.root / BUCKET / "shop" / "nightly" / "shard-0.rdb"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"the lost attempt's upload")

    apply(cp, namespace, CLUSTER % {"image": "valkey/valkey:9.1"})
    operator_process.start()
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    with cluster_client(cp, namespace, password(cp, namespace)) as client:
        fill_every_type(client, 500)
    status = eventually(lambda: finished(cp, namespace, "nightly"), "the backup finished", 300)
    assert status["phase"] == "Complete" and status["attempts"] == 2, status
    check_objects(s3, "nightly")  # shard-0.rdb is the new one: its sha256 is the manifest's
    said = [e["message"] for e in events(cp, namespace, "nightly")
            if e["reason"] == "BackupRestarted"]  # fmt: skip
    assert said == [
        "began again (attempt 2): the operator stopped during the last one; removed its 1 objects"
    ], said


@pytest.mark.timeout(600)
@pytest.mark.namespace_prefix("op")
def test_a_schedule_keeps_the_newest_n_and_deletes_the_others_objects(
    control_plane: ControlPlane, operator: Path, namespace: str, s3: S3Server
) -> None:
    cp = control_plane
    credentials(cp, namespace)

    def scheduled(when: str) -> str:
        return (
            CLUSTER % {"image": "valkey/valkey:9.1"}
            + f"""\
  backup:
    schedule: "{when}"
    keep: 2
    s3:
      bucket: {BUCKET}
      prefix: shop
      endpoint: {s3.url}
      credentialsSecret: {{name: s3-credentials}}
"""
        )

    apply(cp, namespace, scheduled("*/15 * * * * *"))
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    with cluster_client(cp, namespace, password(cp, namespace)) as client:
        fill_every_type(client, 500)

    created: set[str] = set()

    def phases() -> dict[str, str]:
        items = get(cp, namespace, "redisclusterbackups")["items"]
        found = {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}
        created.update(found)
        return found

    def made_four() -> bool:
        phases()
        return len(created) >= 4

    eventually(made_four, "four backups made", 240, 1.0)
    # Once a year from now on: the retention goes on, no new backup begins.
    apply(cp, namespace, scheduled("@yearly"))

    def settled() -> dict[str, str] | None:
        found = phases()
        done = all(p in ("Complete", "Failed") for p in found.values())
        return found if done and list(found.values()).count("Complete") == 2 else None

    kept = eventually(settled, "no backup running, two complete ones kept", 180, 1.0)
    complete = sorted(n for n, p in kept.items() if p == "Complete")
    # nothing older than the oldest kept one is left (names are the due times)
    assert all(n >= complete[0] for n in kept), kept
    for name in complete:
        check_objects(s3, name)
    gone = sorted(created - set(kept))
    assert len(gone) >= 2, (created, kept)
    for name in gone:  # their objects went with them
        assert stored_objects(s3, name) == [], name
    shop_events = events(cp, namespace, "shop")
    assert [e["reason"] for e in shop_events].count("BackupDeleted") >= 2
    # The S3 secret key is in no Event and no line the operator logged.
    assert SECRET not in json.dumps(shop_events) and SECRET not in operator.read_text()

    # A schedule that does not parse shows in the status (the cluster stays Ready); fixed, the
    # condition says so again.
    def scheduled_condition() -> dict[str, str] | None:
        status = get(cp, namespace, "rediscluster", "shop").get("status") or {}
        found = [c for c in status.get("conditions") or [] if c["type"] == "BackupScheduled"]
        return found[0] if found else None

    assert (scheduled_condition() or {}).get("status") == "True", scheduled_condition()
    apply(cp, namespace, scheduled("61 * * * *"))
    bad = eventually(
        lambda: (c := scheduled_condition()) and c["status"] == "False" and c,
        "BackupScheduled False", 60,
    )  # fmt: skip
    assert bad["reason"] == "InvalidSchedule" and "minute '61'" in bad["message"], bad
    assert ready_with(cp, namespace, 6)
    apply(cp, namespace, scheduled("@yearly"))
    eventually(lambda: (scheduled_condition() or {}).get("status") == "True",
               "BackupScheduled True again", 60)  # fmt: skip


def client_of(cp: ControlPlane, namespace: str, name: str) -> RedisCluster:
    """redis-py's cluster client on the cluster ``name``'s Pods, with its password."""
    secret = get(cp, namespace, "secret", f"{name}-auth")
    pw = base64.b64decode(secret["data"]["password"]).decode()
    found = pods(cp, namespace, f"redkube.io/cluster={name}").values()
    nodes = [ClusterNode(p["status"]["podIP"], 6379) for p in found if p["status"].get("podIP")]
    return RedisCluster(startup_nodes=nodes, password=pw, socket_timeout=5, decode_responses=True)


def cluster_phase(cp: ControlPlane, namespace: str, name: str) -> dict[str, object]:
    status: dict[str, object] = get(cp, namespace, "rediscluster", name).get("status") or {}
    return status


RESTORED = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: %(name)s}
spec:
  shards: %(shards)d
  replicasPerShard: 1
  image: %(image)s
  restoreFrom: %(source)s
"""


@pytest.mark.timeout(900)
@pytest.mark.namespace_prefix("op")
def test_restores_into_two_and_three_shards_keep_every_key_and_refuse_what_cannot_load(
    control_plane: ControlPlane, operator: Path, namespace: str, s3: S3Server, redkube: Redkube
) -> None:
    """200,000 keys of every type, some with TTLs; a backup taken while a writer writes on
    (no failed command: the snapshots come from the replicas); the source cluster deleted; the
    backup restored into a new cluster of 2 shards (by the backup's name) and one of 3 (by its
    place in S3): every key, type, value and TTL there (DUMP compared), the cluster Ready only
    then, the loaders gone. Restored locally too. A Valkey 9 backup into Redis 7.0 and a backup
    that does not exist: Failed, with the reason, never Ready."""
    cp = control_plane
    credentials(cp, namespace)
    apply(cp, namespace, CLUSTER % {"image": "valkey/valkey:9.1"})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    with client_of(cp, namespace, "shop") as client:
        keys = fill_every_type(client, KEYS)
        before = dumps(client, keys)
    with client_of(cp, namespace, "shop") as client:
        load = Writer(client, "load", max_seconds=300)
        load.start()
        try:
            # Consistent: writes paused on every master until each snapshot forked.
            apply(cp, namespace, CONSISTENT_BACKUP % {"name": "first", "bucket": BUCKET,
                                                      "endpoint": s3.url})  # fmt: skip
            status = eventually(
                lambda: finished(cp, namespace, "first"), "the backup finished", 300
            )
        finally:
            written = load.stop()
    assert status["phase"] == "Complete", status
    assert written.failures == 0 and written.acknowledged, written.failures
    stored = int(str(status["keys"]))
    assert stored >= KEYS, status  # the data set, and what the writer had written by then
    manifest = check_objects(s3, "first")
    assert manifest["consistent"] is True and status["pausedMs"] == round(
        float(str(manifest["paused_ms"]))
    ), (status, manifest)
    assert "one point in time, writes paused" in str(status["message"]), status
    cp.kubectl("delete", "rediscluster", "shop", "-n", namespace, "--wait=true")
    restore_locally(redkube, s3, str(status["location"]), VALKEY, before, keys, stored)

    by_place = (f"{{s3: {{bucket: {BUCKET}, prefix: shop/first, endpoint: {s3.url},"
                " credentialsSecret: {name: s3-credentials}}}")  # fmt: skip
    for name, shards, image, source in (
        ("two", 2, "valkey/valkey:9.1", "{backup: first}"),
        ("three", 3, "valkey/valkey:9.1", by_place),
        ("older", 1, "redis:7.0", "{backup: first}"),
        ("nothing", 1, "valkey/valkey:9.1", "{backup: missing}"),
    ):
        apply(cp, namespace, RESTORED % {"name": name, "shards": shards, "image": image,
                                         "source": source})  # fmt: skip

    # What cannot be restored fails with its reason, and never says Ready.
    refused = {
        "older": "Valkey 9.1 (RDB format 80), which Redis 7.0 cannot load",
        "nothing": "no RedisClusterBackup 'missing'",
    }
    for name, reason in refused.items():
        said = eventually(
            lambda name=name: (
                (s := cluster_phase(cp, namespace, name)).get("phase") == "Failed" and s
            ),
            f"{name} Failed",
            180,
        )
        assert reason in str(said["message"]), said

    phases: dict[str, set[str]] = {"two": set(), "three": set()}

    def both_ready() -> bool:
        for name, seen in phases.items():
            seen.add(str(cluster_phase(cp, namespace, name).get("phase")))
        return all("Ready" in seen for seen in phases.values())

    eventually(both_ready, "both restored clusters Ready", 600, 1.0)
    for name, shards in (("two", 2), ("three", 3)):
        assert "Restoring" in phases[name], phases  # not Ready before the keys were in
        status = cluster_phase(cp, namespace, name)
        restore = status["restore"]
        assert isinstance(restore, dict)
        assert restore["phase"] == "Complete" and restore["keys"] == stored, restore
        assert restore["snapshotsDone"] == [0, 1, 2], restore
        with client_of(cp, namespace, name) as client:
            assert_same_data(before, dumps(client, keys))
            assert client.dbsize(target_nodes=RedisCluster.PRIMARIES) == stored
        assert len(pods(cp, namespace, f"redkube.io/cluster={name}")) == 2 * shards
    assert pods(cp, namespace, "redkube.io/restore-of") == {}, "loader Pods left"
    assert all(cluster_phase(cp, namespace, n)["phase"] == "Failed" for n in refused)
    # The phase metric says what the status says (the loop alone finds these clusters Ready).
    phases_served = {
        (labels["cluster"], labels["phase"]): value
        for name, labels, value in scrape(metrics_url(operator))
        if name == "redkube_cluster_phase" and labels["cluster"].startswith(f"{namespace}/")
    }
    for name in refused:
        assert phases_served[(f"{namespace}/{name}", "Failed")] == 1, phases_served
        assert phases_served[(f"{namespace}/{name}", "Ready")] == 0, phases_served
    for name in phases:
        assert phases_served[(f"{namespace}/{name}", "Ready")] == 1, phases_served
    # A restore that is over (Complete or Failed) leaves each cluster's run alone: no run was
    # taken for dead and started again (it once was, every pass, for every restored cluster).
    restarted = [line for line in operator.read_text().splitlines()
                 if namespace in line and "starting it again" in line]  # fmt: skip
    assert not restarted, restarted[:5]


@pytest.mark.timeout(900)
@pytest.mark.namespace_prefix("full")
def test_an_operator_killed_during_a_restore_goes_on_from_the_snapshots_done(
    control_plane: ControlPlane, operator_process: Operator, namespace: str, s3: S3Server
) -> None:
    """The operator is SIGKILLed while the second snapshot's loader exists; the next operator
    goes on from status.restore.snapshotsDone, moves the snapshot under way again keeping the
    keys already there, and every key is there once, as it was."""
    cp = control_plane
    credentials(cp, namespace)
    apply(cp, namespace, CLUSTER % {"image": "valkey/valkey:9.1"})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    with client_of(cp, namespace, "shop") as client:
        keys = fill_every_type(client, 30_000)
        before = dumps(client, keys)
    apply(cp, namespace, BACKUP % {"name": "first", "bucket": BUCKET, "endpoint": s3.url})
    status = eventually(lambda: finished(cp, namespace, "first"), "the backup finished", 300)
    assert status["phase"] == "Complete", status

    restored = {"name": "copy", "shards": 3, "image": "valkey/valkey:9.1",
                "source": "{backup: first}"}  # fmt: skip
    apply(cp, namespace, RESTORED % restored)
    eventually(lambda: "copy-restore-1" in pods(cp, namespace, "redkube.io/restore-of=copy"),
               "the second snapshot's loader", 300, 0.1)  # fmt: skip
    operator_process.kill()
    operator_process.start()
    eventually(lambda: cluster_phase(cp, namespace, "copy").get("phase") == "Ready",
               "the restored cluster Ready", 300)  # fmt: skip
    restore = cluster_phase(cp, namespace, "copy")["restore"]
    assert isinstance(restore, dict)
    assert restore["phase"] == "Complete" and restore["snapshotsDone"] == [0, 1, 2], restore
    with client_of(cp, namespace, "copy") as client:
        assert_same_data(before, dumps(client, keys))
        assert client.dbsize(target_nodes=RedisCluster.PRIMARIES) == 30_000
    assert pods(cp, namespace, "redkube.io/restore-of=copy") == {}, "loader Pods left"
    said = operator_process.log.read_text()
    assert "restore going on after a restart" in said and "keys there kept" in said
