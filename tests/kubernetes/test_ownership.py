"""Drift: a change to an owned object by anyone but the operator, read from managedFields."""

from __future__ import annotations

from typing import Any

from redkube.kubernetes.building import build_all
from redkube.kubernetes.clusters import parse
from redkube.kubernetes.ownership import OWNED_KINDS, drift, owning_cluster

MANAGER = "redkube"
CLUSTER = parse(
    {
        "apiVersion": "redkube.io/v1alpha1",
        "kind": "RedisCluster",
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u-1"},
        "spec": {"shards": 3, "replicasPerShard": 1},
    }
)


def statefulset(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "shop-1", "managedFields": list(entries)},
    }


def test_every_applied_kind_but_the_secret_is_watched() -> None:
    plurals = {plural for _, _, plural in OWNED_KINDS}
    built = {obj["kind"] for obj in build_all(CLUSTER, "pw")}
    assert built == {
        "Secret", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy"
    }  # fmt: skip
    assert plurals == {
        "configmaps", "services", "statefulsets", "poddisruptionbudgets", "networkpolicies"
    }  # fmt: skip


def test_every_built_object_names_its_cluster_as_controller() -> None:
    for obj in build_all(CLUSTER, "pw"):
        assert owning_cluster(obj) == "shop", obj["kind"]


def test_an_object_without_our_controller_reference_has_no_cluster() -> None:
    assert owning_cluster({"metadata": {}}) is None
    foreign = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "controller": True}
    assert owning_cluster({"metadata": {"ownerReferences": [foreign]}}) is None


def test_our_own_apply_and_controllers_writing_status_are_not_drift() -> None:
    ours = {"manager": MANAGER, "operation": "Apply"}
    status = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}
    assert drift("MODIFIED", statefulset(ours, status), MANAGER) is None
    assert drift("ADDED", statefulset(ours), MANAGER) is None


def test_a_kubectl_scale_is_drift_naming_the_object_and_the_manager() -> None:
    scaled = {"manager": "kubectl", "operation": "Update", "subresource": "scale"}
    change = drift("MODIFIED", statefulset({"manager": MANAGER}, scaled), MANAGER)
    assert change == "StatefulSet shop-1 was changed by kubectl"


def test_a_deletion_is_drift() -> None:
    assert drift("DELETED", statefulset({"manager": MANAGER}), MANAGER) == (
        "StatefulSet shop-1 was deleted"
    )


def test_the_initial_listing_is_not_drift() -> None:
    edited = {"manager": "kubectl-edit", "operation": "Update"}
    assert drift(None, statefulset(edited), MANAGER) is None
