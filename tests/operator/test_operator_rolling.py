"""Spec changes reaching the Pods on the test bed, under load: a version change (Valkey 9.0 ->
9.1, and Redis 7.0 -> Valkey 9.1, which also replaces every StatefulSet since the family label of
its volume claims cannot change) rolls the Pods replicas first, each master after a graceful
failover; a live setting reaches every Pod by CONFIG SET with no restart; a restart setting and
container resources roll the Pods; `updateStrategy.paused` holds a roll; a version the data
cannot survive is refused before any Pod restarts.

Checked with tools redkube did not write: each Pod's INFO server and CONFIG GET, the Pods' uids,
`redis-cli --cluster check`, redis-py's RedisCluster, and a writer counting acknowledged writes
(SET then WAIT 1) and failed commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed import ControlPlane
from tests.checks import assert_keys, redis_cli_check_at, write_keys
from tests.loads import Load
from tests.operator.conftest import Operator
from tests.operator.test_kubectl_workflow import cluster_client, password, running_pods
from tests.operator.test_operator_full_restart import Connector
from tests.testbed.kube import (
    JSON,
    apply,
    eventually,
    get,
    pods,
    redis_cli,
    rediscluster_messages,
)

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: shop}
spec:
  shards: 3
  replicasPerShard: 1
  image: "%(image)s"
  storage: {size: 1Gi}
  config: %(config)s
  resources: %(resources)s
  updateStrategy: {paused: %(paused)s}
  metrics: {enabled: %(metrics)s}
"""


def manifest(
    image: str, config: dict[str, Any] | None = None, resources: JSON | None = None,
    paused: bool = False, metrics: bool = True,
) -> str:  # fmt: skip
    return CLUSTER % {
        "image": image,
        "config": json.dumps(config or {}),
        "resources": json.dumps(resources or {}),
        "paused": json.dumps(paused),
        "metrics": json.dumps(metrics),
    }


def status(cp: ControlPlane, namespace: str) -> JSON:
    found: JSON = get(cp, namespace, "rediscluster", "shop").get("status") or {}
    return found


def uids(cp: ControlPlane, namespace: str) -> dict[str, str]:
    return {n: p["metadata"]["uid"] for n, p in running_pods(cp, namespace).items()}


def rolled(cp: ControlPlane, namespace: str) -> bool:
    """Ready for the latest spec, every Pod on the update revision, 6 Pods Ready."""
    obj = get(cp, namespace, "rediscluster", "shop")
    found = obj.get("status") or {}
    return (
        found.get("observedGeneration") == obj["metadata"]["generation"]
        and found.get("phase") == "Ready"
        and found.get("updatedNodes") == "6/6"
        and found.get("currentRevision") == found.get("updateRevision")
        and len(running_pods(cp, namespace)) == 6
    )


def versions(cp: ControlPlane, namespace: str, pw: str) -> set[str]:
    found = set()
    for pod in running_pods(cp, namespace).values():
        info = redis_cli(pod["status"]["podIP"], pw, "info", "server")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        found.add((fields.get("valkey_version") or fields["redis_version"]).strip())
    return found


def config_everywhere(cp: ControlPlane, namespace: str, pw: str, key: str) -> set[str]:
    return {
        redis_cli(pod["status"]["podIP"], pw, "config", "get", key).splitlines()[-1].strip()
        for pod in running_pods(cp, namespace).values()
    }


def assert_whole(cp: ControlPlane, namespace: str, pw: str, written: dict[str, str]) -> None:
    ip = next(iter(running_pods(cp, namespace).values()))["status"]["podIP"]
    output = redis_cli_check_at(ip, pw)
    assert output.count("slots |") == 3 and output.count("1 slaves") == 3, output
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)


@pytest.mark.timeout(900)
@pytest.mark.namespace_prefix("op")
def test_valkey_9_0_to_9_1_then_live_and_restart_settings_under_load(
    control_plane: ControlPlane, operator: Path, namespace: str, valkey_9_0: str
) -> None:
    cp = control_plane
    # Metrics off until the last roll, which turns them on.
    apply(cp, namespace, manifest("valkey/valkey:9.0", metrics=False))
    eventually(lambda: rolled(cp, namespace), "Ready on one revision", 180)
    pw = password(cp, namespace)
    assert versions(cp, namespace, pw) == {"9.0.0"}
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, 10_000)

    # A version change: every Pod restarts, replicas first, masters after a failover.
    before = uids(cp, namespace)
    with Load(cluster_client(cp, namespace, pw), Connector(cp, namespace, pw), 400) as load:
        apply(cp, namespace, manifest("valkey/valkey:9.1", metrics=False))
        eventually(lambda: status(cp, namespace).get("phase") == "Updating", "Updating", 30)
        eventually(lambda: rolled(cp, namespace), "every Pod on the new revision", 400)
    with cluster_client(cp, namespace, pw) as client:
        load.assert_nothing_failed_or_lost(client)
    assert versions(cp, namespace, pw) == {"9.1.2"}
    assert not set(before.values()) & set(uids(cp, namespace).values())
    assert_whole(cp, namespace, pw, written)
    said = rediscluster_messages(cp, namespace)
    restarts = [m for m in said if m.startswith(("restart ", "failover (default)"))]
    assert len([m for m in restarts if m.startswith("restart ")]) >= 6, said
    assert all("rolling update" in m or "spreading" in m for m in restarts), restarts

    # A live setting: CONFIG SET everywhere, no Pod restarted.
    before = uids(cp, namespace)
    apply(cp, namespace, manifest("valkey/valkey:9.1", {"maxmemory-policy": "allkeys-lru"},
                                  metrics=False))  # fmt: skip
    eventually(
        lambda: config_everywhere(cp, namespace, pw, "maxmemory-policy") == {"allkeys-lru"},
        "maxmemory-policy on every Pod",
        60,
    )
    eventually(lambda: rolled(cp, namespace), "Ready", 60)
    assert uids(cp, namespace) == before

    # A setting a running server cannot take, container resources, and the metrics sidecar
    # turned on: a roll.
    assert all(len(p["spec"]["containers"]) == 1 for p in running_pods(cp, namespace).values())
    resources = {"requests": {"memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    config = {"maxmemory-policy": "allkeys-lru", "databases": 4}
    with Load(cluster_client(cp, namespace, pw), Connector(cp, namespace, pw), 400) as load:
        apply(cp, namespace, manifest("valkey/valkey:9.1", config, resources))
        eventually(lambda: status(cp, namespace).get("updatedNodes") != "6/6", "a roll", 30)
        eventually(lambda: rolled(cp, namespace), "every Pod on the new revision", 400)
    with cluster_client(cp, namespace, pw) as client:
        load.assert_nothing_failed_or_lost(client)
    assert config_everywhere(cp, namespace, pw, "databases") == {"4"}
    for pod in running_pods(cp, namespace).values():
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
        assert [c["name"] for c in pod["spec"]["containers"]] == ["server", "metrics"]
    assert_whole(cp, namespace, pw, written)


@pytest.mark.timeout(900)
@pytest.mark.namespace_prefix("op")
def test_redis_7_to_valkey_9_replaces_the_statefulsets_and_rolls_under_load(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, manifest("redis:7.0"))
    eventually(lambda: rolled(cp, namespace), "Ready on one revision", 180)
    pw = password(cp, namespace)
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, 10_000)
    claims = {c["metadata"]["uid"] for c in get(cp, namespace, "persistentvolumeclaims")["items"]}
    assert len(claims) == 6

    with Load(cluster_client(cp, namespace, pw), Connector(cp, namespace, pw), 400) as load:
        apply(cp, namespace, manifest("valkey/valkey:9.1"))
        eventually(lambda: rolled(cp, namespace), "every Pod on the new revision", 400)
    with cluster_client(cp, namespace, pw) as client:
        load.assert_nothing_failed_or_lost(client)
    assert versions(cp, namespace, pw) == {"9.1.2"}
    assert_whole(cp, namespace, pw, written)
    # The volumes stayed (the data moved with the Pods, not by a resync from scratch).
    after = {c["metadata"]["uid"] for c in get(cp, namespace, "persistentvolumeclaims")["items"]}
    assert after == claims
    said = " ".join(rediscluster_messages(cp, namespace))
    assert "Failed" not in status(cp, namespace).get("phase", "")
    statefulset = get(cp, namespace, "statefulset", "shop-0")
    labels = statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"]
    assert "app.kubernetes.io/name" not in labels, labels
    assert "rolling update" in said, said


@pytest.mark.timeout(600)
@pytest.mark.namespace_prefix("op")
def test_a_paused_roll_waits_and_a_downgrade_is_refused_before_any_restart(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    apply(cp, namespace, manifest("valkey/valkey:9.1"))
    eventually(lambda: rolled(cp, namespace), "Ready on one revision", 180)
    pw = password(cp, namespace)
    before = uids(cp, namespace)

    # Valkey 9.1 writes RDB 80, which Valkey 8 cannot load: refused, nothing restarts.
    apply(cp, namespace, manifest("valkey/valkey:8.1"))
    eventually(
        lambda: "cannot load the data" in status(cp, namespace).get("message", ""),
        "the refusal in the status",
        60,
    )
    found = get(cp, namespace, "rediscluster", "shop")
    assert found["status"]["observedGeneration"] < found["metadata"]["generation"]
    statefulset = get(cp, namespace, "statefulset", "shop-0")
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == "valkey/valkey:9.1"
    assert uids(cp, namespace) == before
    assert versions(cp, namespace, pw) == {"9.1.2"}
    events = get(cp, namespace, "events", "--field-selector=reason=UpdateRefused")
    assert events["items"], "no UpdateRefused Event"

    # Paused: a restart setting changes the revision, but no Pod restarts until resumed.
    apply(cp, namespace, manifest("valkey/valkey:9.1", {"databases": 4}, paused=True))
    eventually(
        lambda: "rolling update paused (0/6" in status(cp, namespace).get("message", ""),
        "the pause in the status",
        60,
    )
    assert status(cp, namespace)["phase"] == "Updating"
    assert uids(cp, namespace) == before
    shown = subprocess.run(
        [sys.executable, "-m", "redkube", "status", "shop", "-n", namespace,
         f"--kubeconfig={cp.kubeconfig}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "0/6 nodes updated (the others on" in shown.stdout, shown.stdout
    apply(cp, namespace, manifest("valkey/valkey:9.1", {"databases": 4}, paused=False))
    eventually(lambda: rolled(cp, namespace), "every Pod on the new revision", 400)
    assert config_everywhere(cp, namespace, pw, "databases") == {"4"}
    conditions = {c["type"]: c for c in status(cp, namespace)["conditions"]}
    assert conditions["Updating"]["status"] == "False", conditions


def pods_on(cp: ControlPlane, namespace: str, revision: str) -> int:
    """Pods (any state) whose template revision is `revision`."""
    listed = pods(cp, namespace, "redkube.io/cluster=shop")
    return sum(
        1
        for pod in listed.values()
        if (pod["metadata"].get("annotations") or {}).get("redkube.io/revision") == revision
    )


def updated_revision(cp: ControlPlane, namespace: str) -> str | None:
    """The revision the StatefulSets' Pod template carries once it differs from the Pods'."""
    template = get(cp, namespace, "statefulset", "shop-0")["spec"]["template"]["metadata"]
    revision = str((template.get("annotations") or {}).get("redkube.io/revision", ""))
    return revision if revision and pods_on(cp, namespace, revision) < 6 else None


@pytest.mark.timeout(900)
@pytest.mark.namespace_prefix("full")
def test_an_operator_killed_half_way_through_a_roll_resumes_where_it_was(
    control_plane: ControlPlane, operator_process: Operator, namespace: str, valkey_9_0: str
) -> None:
    """SIGKILL the operator once a Pod runs the new revision; the next operator (a new
    leader, after the Lease runs out) goes on from the Pods' revisions, with no client error."""
    cp = control_plane
    apply(cp, namespace, manifest("valkey/valkey:9.0"))
    eventually(lambda: rolled(cp, namespace), "Ready on one revision", 180)
    pw = password(cp, namespace)
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, 5_000)
    with Load(cluster_client(cp, namespace, pw), Connector(cp, namespace, pw), 400) as load:
        apply(cp, namespace, manifest("valkey/valkey:9.1"))
        eventually(lambda: updated_revision(cp, namespace) is not None, "a new revision", 60)
        target = updated_revision(cp, namespace)
        assert target is not None
        eventually(lambda: pods_on(cp, namespace, target) >= 1, "a Pod updated", 120, 0.01)
        operator_process.kill()
        halfway = pods_on(cp, namespace, target)
        operator_process.start()
        eventually(lambda: rolled(cp, namespace), "every Pod on the new revision", 400)
    assert halfway < 6, "the roll ended before the kill: nothing was resumed"
    with cluster_client(cp, namespace, pw) as client:
        load.assert_nothing_failed_or_lost(client)
    assert versions(cp, namespace, pw) == {"9.1.2"}
    assert_whole(cp, namespace, pw, written)


@pytest.mark.timeout(600)
@pytest.mark.namespace_prefix("op")
def test_a_statefulset_field_that_cannot_change_is_replaced_keeping_pods_and_volumes(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    """spec.storage.size is in the StatefulSets' volumeClaimTemplates, which Kubernetes will not
    update: the operator replaces each StatefulSet with its Pods and volumes orphaned, and the
    new one adopts them; no Pod restarts (the Pods' template did not change)."""
    cp = control_plane
    apply(cp, namespace, manifest("valkey/valkey:9.1"))
    eventually(lambda: rolled(cp, namespace), "Ready on one revision", 180)
    pods_before = uids(cp, namespace)
    sets_before = {s["metadata"]["uid"] for s in get(cp, namespace, "statefulsets")["items"]}
    claims = {c["metadata"]["uid"] for c in get(cp, namespace, "persistentvolumeclaims")["items"]}

    apply(cp, namespace, manifest("valkey/valkey:9.1").replace("size: 1Gi", "size: 2Gi"))

    def replaced() -> bool:
        listed = get(cp, namespace, "statefulsets")["items"]
        return len(listed) == 3 and not {s["metadata"]["uid"] for s in listed} & sets_before

    eventually(replaced, "3 new StatefulSets", 120)
    eventually(lambda: rolled(cp, namespace), "Ready", 120)
    for statefulset in get(cp, namespace, "statefulsets")["items"]:
        claim = statefulset["spec"]["volumeClaimTemplates"][0]["spec"]
        assert claim["resources"]["requests"]["storage"] == "2Gi"
    assert uids(cp, namespace) == pods_before
    for pod in running_pods(cp, namespace).values():
        owners = pod["metadata"].get("ownerReferences") or []
        assert [o["kind"] for o in owners] == ["StatefulSet"], owners  # adopted
    after = {c["metadata"]["uid"] for c in get(cp, namespace, "persistentvolumeclaims")["items"]}
    assert after == claims
    said = " ".join(rediscluster_messages(cp, namespace))
    assert "replacing StatefulSet shop-0" in said, said
