"""Changing spec.shards on the test bed: the operator creates the new StatefulSets, moves slots
and keys, drains the departing shards and deletes their StatefulSets and PodDisruptionBudgets,
and the status shows the move (phase Resharding, status.migration, the Resharding condition)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from testbed import ControlPlane
from tests.checks import assert_keys, redis_cli_check_at, write_keys
from tests.operator.test_kubectl_workflow import cluster_client, password, running_pods
from tests.operator.test_replica_scaling import ready_with
from tests.testbed.kube import apply, eventually, get, rediscluster_messages

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: shop}
spec:
  shards: %(shards)d
  replicasPerShard: 1
  image: %(image)s
  storage: {size: 1Gi}
"""


def statefulsets(cp: ControlPlane, namespace: str) -> set[str]:
    found = cp.kubectl("get", "statefulsets", "-n", namespace, "-o",
                       "jsonpath={.items[*].metadata.name}")  # fmt: skip
    return set(found.stdout.split())


def pdbs(cp: ControlPlane, namespace: str) -> set[str]:
    found = cp.kubectl("get", "poddisruptionbudgets", "-n", namespace, "-o",
                       "jsonpath={.items[*].metadata.name}")  # fmt: skip
    return set(found.stdout.split())


class StatusWatch:
    """Polls the RedisCluster's status in the background and keeps every distinct migration
    and phase it saw (bounded)."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp, self.namespace = cp, namespace
        self.phases: set[str] = set()
        self.migrations: list[dict[str, Any]] = []
        self.conditions: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(3000):
            if self._stop.wait(0.1):
                return
            status = get(self.cp, self.namespace, "rediscluster", "shop").get("status") or {}
            self.phases.add(str(status.get("phase")))
            if status.get("migration") and status["migration"] not in self.migrations:
                self.migrations.append(status["migration"])
            for condition in status.get("conditions") or []:
                if condition.get("type") == "Resharding" and condition.get("status") == "True":
                    self.conditions.add(condition.get("message", ""))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.mark.timeout(600)
@pytest.mark.namespace_prefix("op")
@pytest.mark.parametrize("image", ["valkey/valkey:9.1", "redis:7.0"])
def test_shards_scale_out_and_in_keeping_every_key(
    control_plane: ControlPlane, operator: Path, namespace: str, image: str
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"shards": 3, "image": image})
    eventually(lambda: ready_with(cp, namespace, 6), "Ready with 6 Pods", 180)
    pw = password(cp, namespace)
    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, 20_000)

    watch = StatusWatch(cp, namespace)
    try:
        apply(cp, namespace, CLUSTER % {"shards": 5, "image": image})
        eventually(lambda: ready_with(cp, namespace, 10), "Ready with 10 Pods", 240)
        assert statefulsets(cp, namespace) == {f"shop-{i}" for i in range(5)}
        ip = next(iter(running_pods(cp, namespace).values()))["status"]["podIP"]
        assert redis_cli_check_at(ip, pw).count("slots |") == 5

        apply(cp, namespace, CLUSTER % {"shards": 3, "image": image})
        eventually(
            lambda: ready_with(cp, namespace, 6) and len(statefulsets(cp, namespace)) == 3,
            "Ready with 6 Pods and 3 StatefulSets",
            240,
        )
    finally:
        watch.stop()
    assert statefulsets(cp, namespace) == {"shop-0", "shop-1", "shop-2"}
    assert pdbs(cp, namespace) == {"shop-0", "shop-1", "shop-2"}
    ip = next(iter(running_pods(cp, namespace).values()))["status"]["podIP"]
    output = redis_cli_check_at(ip, pw)
    assert output.count("slots |") == 3, output
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)
    assert "Resharding" in watch.phases, watch.phases
    assert watch.migrations and all(m["slotsToMove"] > 0 for m in watch.migrations)
    assert watch.conditions, "no Resharding condition seen"
    said = " ".join(rediscluster_messages(cp, namespace))
    assert "move " in said and "retire shop-4-0, shop-4-1" in said, said
