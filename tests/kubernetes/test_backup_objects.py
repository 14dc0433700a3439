"""RedisClusterBackup objects, spec.backup and spec.restoreFrom read into plain values; the
objects a schedule creates and the ones its retention deletes; a restore's loader; which backups
an image can load. Pure: no apiserver (the CRD's own checks are in test_crd.py, the behaviour on
the test bed in tests/operator/test_backups.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from redkube.kubernetes.backups import (
    build_scheduled_backup,
    expired,
    parse_backup,
    parse_restore,
    parse_schedule,
)
from redkube.kubernetes.building import RESTORE_LABEL, build_network_policy
from redkube.kubernetes.clusters import parse
from redkube.kubernetes.loaders import build_loader_pod, build_loader_secret
from redkube.model.backups import BackupManifest
from redkube.model.specs import SpecError
from redkube.operator.restoring import load_refusal

JSON = dict[str, Any]
S3: JSON = {"bucket": "backups", "credentialsSecret": {"name": "s3"}}


def backup_object(**spec: Any) -> JSON:
    return {"metadata": {"name": "nightly", "namespace": "shop-ns"}, "spec": spec}


def cluster_object(**spec: Any) -> JSON:
    return {"metadata": {"name": "shop", "namespace": "shop-ns", "uid": "u-1"}, "spec": spec}


def test_a_backup_goes_under_its_prefix_and_name_with_default_keys() -> None:
    backup = parse_backup(backup_object(cluster="shop", s3=S3))
    assert backup.location == "s3://backups/shop-ns/shop/nightly"  # default prefix
    assert (backup.target.access_key_key, backup.target.secret_key_key) == (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
    )  # fmt: skip
    custom = parse_backup(backup_object(cluster="shop", s3={**S3, "prefix": "/prod/x/"}))
    assert custom.location == "s3://backups/prod/x/nightly"
    assert parse_backup(backup_object(cluster="shop", s3={**S3, "prefix": ""})).location == (
        "s3://backups/nightly"
    )


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"s3": S3}, "spec.cluster must name a RedisCluster"),
        ({"cluster": "shop"}, "spec.s3 must name a bucket"),
        ({"cluster": "shop", "s3": {"bucket": "b"}}, "credentialsSecret must name a Secret"),
        ({"cluster": "shop", "s3": S3, "consistent": "yes"}, "spec.consistent must be true or"),
    ],
)
def test_bad_backups_are_refused_with_their_field(spec: JSON, said: str) -> None:
    with pytest.raises(SpecError, match=said):
        parse_backup(backup_object(**spec))


def test_a_schedule_makes_backups_named_for_their_due_time_without_an_owner() -> None:
    cluster = cluster_object(backup={"schedule": "0 3 * * *", "keep": 2, "s3": S3})
    schedule = parse_schedule(cluster)
    assert schedule is not None and schedule.keep == 2
    made = build_scheduled_backup(cluster, schedule, datetime(2026, 12, 1, 3, tzinfo=UTC))
    assert made["metadata"]["name"] == "shop-20261201030000"
    assert made["metadata"]["labels"] == {
        "redkube.io/cluster": "shop",
        "redkube.io/scheduled": "true",
    }
    assert "ownerReferences" not in made["metadata"]  # deleting the cluster keeps its backups
    assert parse_backup(made).location == "s3://backups/shop-ns/shop/shop-20261201030000"
    assert parse_backup(made).consistent is False
    # A consistent schedule makes consistent backups.
    consistent = cluster_object(backup={"schedule": "@daily", "consistent": True, "s3": S3})
    schedule = parse_schedule(consistent)
    assert schedule is not None
    made = build_scheduled_backup(consistent, schedule, datetime(2026, 12, 1, tzinfo=UTC))
    assert parse_backup(made).consistent is True
    assert parse_schedule(cluster_object()) is None
    with pytest.raises(SpecError, match=r"spec\.backup\.schedule: minute '61'"):
        parse_schedule(cluster_object(backup={"schedule": "61 * * * *", "s3": S3}))
    with pytest.raises(SpecError, match=r"spec\.backup\.keep"):
        parse_schedule(cluster_object(backup={"schedule": "@daily", "keep": 0, "s3": S3}))


def scheduled(name: str, phase: str) -> JSON:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


def test_retention_keeps_the_newest_complete_ones_and_never_a_running_one() -> None:
    backups = [
        scheduled("shop-20261201000000", "Complete"),
        scheduled("shop-20261201010000", "Failed"),
        scheduled("shop-20261201020000", "Complete"),
        scheduled("shop-20261201030000", "Complete"),
        scheduled("shop-20261201040000", "Running"),
    ]
    assert expired(backups, 2) == ["shop-20261201000000", "shop-20261201010000"]
    assert expired(backups, 3) == []  # the failed one is newer than the oldest kept
    assert expired(backups, 5) == []
    assert expired([scheduled("shop-20261201000000", "Failed")], 1) == []  # nothing kept yet
    assert expired(list(reversed(backups)), 1) == [
        "shop-20261201000000", "shop-20261201010000", "shop-20261201020000",
    ]  # fmt: skip


def test_restore_from_names_a_backup_or_a_place() -> None:
    by_name = parse_restore(cluster_object(restoreFrom={"backup": "nightly"}))
    assert by_name is not None and by_name.describe() == "backup nightly"
    place = {**S3, "prefix": "shop-ns/shop/nightly"}
    by_place = parse_restore(cluster_object(restoreFrom={"s3": place}))
    assert by_place is not None and by_place.describe() == "s3://backups/shop-ns/shop/nightly"
    assert parse_restore(cluster_object()) is None
    for wrong in ({}, {"backup": "a", "s3": place}):
        with pytest.raises(SpecError, match="either a backup or an s3 location"):
            parse_restore(cluster_object(restoreFrom=wrong))


def test_a_loader_is_no_member_and_keeps_its_password_out_of_its_arguments() -> None:
    cluster = parse(
        cluster_object(image="valkey/valkey:9.1", resources={"limits": {"memory": "1Gi"}})
    )
    secret = build_loader_secret(cluster, 2, "one-off-password")
    pod = build_loader_pod(cluster, 2)
    assert pod["metadata"]["name"] == secret["metadata"]["name"] == "shop-restore-2"
    labels = pod["metadata"]["labels"]
    assert labels[RESTORE_LABEL] == "shop" and "redkube.io/cluster" not in labels
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"  # goes with its cluster
    conf = base64.b64decode(secret["data"]["loader.conf"]).decode()
    assert "requirepass one-off-password" in conf.splitlines()
    assert "one-off-password" not in str(pod)
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["valkey-server", "/etc/redkube-loader/loader.conf"]
    assert container["image"] == "valkey/valkey:9.1"
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["restartPolicy"] == "Never"


def test_the_clusters_network_policy_lets_its_loaders_reach_the_client_port() -> None:
    policy = build_network_policy(parse(cluster_object()), "redkube-system")
    client_port = [r for r in policy["spec"]["ingress"] if r.get("ports") == [
        {"protocol": "TCP", "port": 6379}]]  # fmt: skip
    assert {"podSelector": {"matchLabels": {RESTORE_LABEL: "shop"}}} in client_port[0]["from"]


def manifest_of(server: str) -> BackupManifest:
    return BackupManifest("shop", server, (), 0.0, 0.0, False)


@pytest.mark.parametrize(
    ("server", "image", "refused"),
    [
        ("valkey 9.1.2", "valkey/valkey:9.1", False),
        ("valkey 9.0.0", "valkey/valkey:9.1", False),
        ("redis 7.0.15", "valkey/valkey:9.1", False),
        ("redis 7.0.15", "redis:7.2", False),
        ("valkey 9.1.2", "redis:7.0", True),
        ("valkey 9.1.2", "valkey/valkey:8.1", True),
        ("redis 7.2.4", "redis:7.0", True),
        ("redis 7.4.1", "valkey/valkey:9.1", True),  # Redis' RDB 12 is foreign to Valkey
    ],
)
def test_which_backups_an_image_can_load(server: str, image: str, refused: bool) -> None:
    why = load_refusal(manifest_of(server), image)
    assert (why is not None) == refused, why
    if why is not None:
        assert "cannot load" in why
