"""The test bed's PersistentVolume provisioner, against the real control plane.

There is no kubelet here: a Node object (kept Ready by a heartbeat thread) is enough for the
scheduler to pick it, write `selected-node` on the claims and, once they are bound, bind the
Pods. Nobody runs those Pods; only the volumes are checked.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from redkube.testbed import ControlPlane
from redkube.testbed import provisioner as provisioner_module
from redkube.testbed.apiclient import JSON, ApiClient, ApiError, timestamp
from redkube.testbed.provisioner import (
    OWNER_ANNOTATION,
    PROVISIONER,
    STORAGE_CLASS,
    Provisioner,
)
from tests.testbed.kube import eventually as poll_until

NODE = "storage-test-node"
NAMESPACE = "storage-test"
IMMEDIATE_CLASS = "storage-test-immediate"
TAINT = {"key": "redkube.io/storage-test", "value": "true", "effect": "NoSchedule"}
"""Keeps other tests' Pods off our node: only our Pods tolerate it."""
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
HEARTBEAT_SECONDS = 10.0
WAIT = 60.0

T = TypeVar("T")


eventually = partial(poll_until, timeout=WAIT, interval=0.25)


def _get(api: ApiClient, path: str) -> JSON | None:
    try:
        return api.get(path)
    except ApiError as error:
        if error.not_found:
            return None
        raise


def _delete(api: ApiClient, path: str, body: JSON | None = None) -> None:
    try:
        api.delete(path, body)
    except ApiError as error:
        if not error.not_found:
            raise


def claim_path(name: str) -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{name}"


def volume_path(name: str) -> str:
    return f"/api/v1/persistentvolumes/{name}"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> ApiClient:
    return ApiClient.from_kubeconfig(control_plane.kubeconfig)


def _heartbeat(api: ApiClient) -> None:
    """What a kubelet does: renew the node's Lease and post a Ready status."""
    lease = f"{LEASES}/{NODE}"
    try:
        api.patch(lease, {"spec": {"renewTime": timestamp(micro=True)}})
    except ApiError as error:
        if not error.not_found:
            raise
        api.create(
            LEASES,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": NODE, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": NODE,
                    "leaseDurationSeconds": 40,
                    "renewTime": timestamp(micro=True),
                },
            },
        )
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "storage test node (no kubelet)",
        "lastHeartbeatTime": timestamp(),
        "lastTransitionTime": timestamp(),
    }
    api.patch(
        f"/api/v1/nodes/{NODE}/status",
        {"status": {"capacity": resources, "allocatable": resources, "conditions": [ready]}},
    )


@pytest.fixture(scope="module")
def node(api: ApiClient) -> Iterator[str]:
    """A Ready Node of our own; our Pods are pinned to it (nodeSelector) and tolerate it."""
    api.create(
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {
                    "kubernetes.io/hostname": NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"taints": [TAINT]},
        },
    )
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                _heartbeat(api)
            except ApiError as error:
                print(f"heartbeat of {NODE}: {error}")

    _heartbeat(api)
    thread = threading.Thread(target=beat, name="storage-test-heartbeat", daemon=True)
    thread.start()
    try:
        # The admission plugin TaintNodesByCondition taints a new Node not-ready; the node
        # lifecycle controller lifts the taint once it sees Ready=True.
        def schedulable() -> bool:
            found = api.get(f"/api/v1/nodes/{NODE}")
            return found["spec"].get("taints") == [TAINT]

        eventually(schedulable, f"node {NODE} loses its not-ready taint")
        yield NODE
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_SECONDS + 35)
        _delete(api, f"/api/v1/nodes/{NODE}")
        _delete(api, f"{LEASES}/{NODE}")


@pytest.fixture(scope="module")
def volumes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("volumes")


@pytest.fixture(scope="module")
def provisioner(api: ApiClient, volumes_root: Path) -> Iterator[Provisioner]:
    """Our Provisioner, running in a thread. (A node agent may run another one meanwhile.)"""
    provisioner = Provisioner(api, volumes_root)
    provisioner.ensure_storage_class()
    stop = threading.Event()
    thread = threading.Thread(
        target=provisioner.run, args=(stop,), name="storage-test-provisioner", daemon=True
    )
    thread.start()
    yield provisioner
    stop.set()
    thread.join(timeout=provisioner_module.WATCH_SECONDS + 30)
    assert not thread.is_alive(), "Provisioner.run did not return after stop was set"


def _force_delete_pods(api: ApiClient) -> None:
    """Pods bound to a Node without a kubelet never finish terminating: remove them now."""
    for pod in api.get(f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]:
        _delete(
            api,
            f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}",
            {"gracePeriodSeconds": 0},
        )


def _volumes_of_namespace(api: ApiClient) -> list[str]:
    return [
        pv["metadata"]["name"]
        for pv in api.get("/api/v1/persistentvolumes")["items"]
        if (pv["spec"].get("claimRef") or {}).get("namespace") == NAMESPACE
    ]


@pytest.fixture(scope="module")
def namespace(api: ApiClient, node: str, provisioner: Provisioner) -> Iterator[str]:
    """Our namespace; at the end everything in it goes, and the provisioner deletes its PVs."""
    api.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    eventually(
        lambda: _get(api, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"),
        "the ServiceAccount controller creates the namespace's `default` ServiceAccount",
    )
    yield NAMESPACE
    sets = api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets")["items"]
    for statefulset in sets:
        _delete(
            api,
            f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{statefulset['metadata']['name']}",
            {"propagationPolicy": "Orphan"},
        )
    _force_delete_pods(api)
    _delete(api, f"/api/v1/namespaces/{NAMESPACE}")

    def namespace_gone() -> bool:
        if _get(api, f"/api/v1/namespaces/{NAMESPACE}") is None:
            return True
        _force_delete_pods(api)
        return False

    eventually(namespace_gone, f"namespace {NAMESPACE} is deleted", timeout=90)
    eventually(
        lambda: not _volumes_of_namespace(api),
        "the provisioner deletes the released volumes of the namespace's claims",
    )


@pytest.fixture(scope="module")
def immediate_class(api: ApiClient) -> Iterator[str]:
    """Someone else's StorageClass for our provisioner, with Immediate binding."""
    api.create(
        "/apis/storage.k8s.io/v1/storageclasses",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": IMMEDIATE_CLASS},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        },
    )
    yield IMMEDIATE_CLASS
    _delete(api, f"/apis/storage.k8s.io/v1/storageclasses/{IMMEDIATE_CLASS}")


# --- helpers ----------------------------------------------------------------------------------


def create_claim(
    api: ApiClient,
    provisioner: Provisioner,
    name: str,
    *,
    storage_class: str | None = None,
    size: str = "1Gi",
) -> JSON:
    """A claim that only our provisioner (not a node agent's) will provision."""
    spec: JSON = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return api.create(
        f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "annotations": {OWNER_ANNOTATION: provisioner.identity},
            },
            "spec": spec,
        },
    )


def pod_spec(volumes: list[JSON]) -> JSON:
    return {
        "nodeSelector": {"kubernetes.io/hostname": NODE},
        "tolerations": [{"key": TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": v["name"], "mountPath": "/data"} for v in volumes],
            }
        ],
        "volumes": volumes,
    }


def create_pod(api: ApiClient, name: str, claim: str) -> JSON:
    volumes: list[JSON] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return api.create(
        f"/api/v1/namespaces/{NAMESPACE}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": pod_spec(volumes),
        },
    )


def wait_bound(api: ApiClient, claim: str) -> tuple[JSON, JSON]:
    """The claim once Bound, and its PersistentVolume."""

    def bound() -> JSON | None:
        found = _get(api, claim_path(claim))  # a StatefulSet's claims appear a bit later
        return found if found and found["status"].get("phase") == "Bound" else None

    pvc = eventually(bound, f"claim {claim} is Bound")
    return pvc, api.get(volume_path(pvc["spec"]["volumeName"]))


def wait_scheduled(api: ApiClient, pod: str) -> None:
    eventually(
        lambda: (
            api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}")["spec"].get("nodeName") == NODE
        ),
        f"the scheduler binds pod {pod} to {NODE}",
    )


def delete_pod_and_claim(api: ApiClient, pod: str, claim: str) -> None:
    """Force-delete the Pod (no kubelet to confirm), then the claim (pvc-protection waits)."""
    _delete(api, f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}", {"gracePeriodSeconds": 0})
    api.delete(claim_path(claim))
    eventually(lambda: _get(api, claim_path(claim)) is None, f"claim {claim} is deleted")


def check_local_volume(pv: JSON, pvc: JSON, root: Path) -> Path:
    """The PV provisioned for `pvc`; return its directory."""
    uid = pvc["metadata"]["uid"]
    assert pv["metadata"]["name"] == f"pvc-{uid}"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
    spec = pv["spec"]
    path = Path(spec["local"]["path"])
    assert path == root.resolve() / f"pvc-{uid}"
    assert path.is_dir()
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}
            ]
        }
    ]
    assert spec["capacity"] == {"storage": pvc["spec"]["resources"]["requests"]["storage"]}
    assert spec["accessModes"] == pvc["spec"]["accessModes"]
    assert spec["storageClassName"] == STORAGE_CLASS
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["volumeMode"] == "Filesystem"
    claim_ref = spec["claimRef"]
    assert (claim_ref["namespace"], claim_ref["name"], claim_ref["uid"]) == (
        NAMESPACE,
        pvc["metadata"]["name"],
        uid,
    )
    annotations = pvc["metadata"]["annotations"]
    assert annotations["volume.kubernetes.io/selected-node"] == NODE
    assert annotations["volume.kubernetes.io/storage-provisioner"] == PROVISIONER
    assert pv["status"]["phase"] == "Bound"
    return path


# --- against the control plane ----------------------------------------------------------------


def test_standard_is_the_default_storage_class(
    control_plane: ControlPlane, provisioner: Provisioner
) -> None:
    provisioner.ensure_storage_class()  # a second call (or the node agent's) is harmless
    lines = control_plane.kubectl("get", "storageclass").stdout.splitlines()
    standard = [line.split() for line in lines if line.startswith(f"{STORAGE_CLASS} ")]
    assert len(standard) == 1, lines
    assert standard[0][:5] == [
        STORAGE_CLASS,
        "(default)",
        PROVISIONER,
        "Delete",
        "WaitForFirstConsumer",
    ]


def test_claim_waits_for_a_pod_then_gets_a_local_volume_on_its_node(
    api: ApiClient, namespace: str, provisioner: Provisioner, volumes_root: Path
) -> None:
    create_claim(api, provisioner, "data")
    time.sleep(2)
    waiting = api.get(claim_path("data"))
    assert waiting["spec"]["storageClassName"] == STORAGE_CLASS  # the default class
    assert waiting["status"]["phase"] == "Pending"
    assert "volumeName" not in waiting["spec"]
    assert "volume.kubernetes.io/selected-node" not in waiting["metadata"].get("annotations", {})

    create_pod(api, "user", "data")
    pvc, pv = wait_bound(api, "data")
    path = check_local_volume(pv, pvc, volumes_root)
    assert pv["metadata"]["annotations"][OWNER_ANNOTATION] == provisioner.identity
    wait_scheduled(api, "user")

    # Level-triggered: syncing a stale (still pending) copy of the claim changes nothing.
    stale = {**pvc, "spec": {**pvc["spec"]}, "status": {"phase": "Pending"}}
    del stale["spec"]["volumeName"]
    provisioner.sync_claim(stale)
    assert api.get(volume_path(pv["metadata"]["name"]))["metadata"]["uid"] == pv["metadata"]["uid"]
    assert path.is_dir()


def test_deleting_the_claim_deletes_the_volume_and_its_directory(
    api: ApiClient, namespace: str, provisioner: Provisioner, volumes_root: Path
) -> None:
    create_claim(api, provisioner, "scratch", size="64Mi")
    create_pod(api, "scratch-user", "scratch")
    pvc, pv = wait_bound(api, "scratch")
    path = check_local_volume(pv, pvc, volumes_root)
    (path / "file").write_text("data")
    wait_scheduled(api, "scratch-user")

    delete_pod_and_claim(api, "scratch-user", "scratch")
    name = pv["metadata"]["name"]
    eventually(lambda: _get(api, volume_path(name)) is None, f"volume {name} is deleted")
    assert not path.exists()


def test_a_retained_volume_keeps_its_directory(
    api: ApiClient, namespace: str, provisioner: Provisioner, volumes_root: Path
) -> None:
    create_claim(api, provisioner, "keep")
    create_pod(api, "keep-user", "keep")
    pvc, pv = wait_bound(api, "keep")
    path = check_local_volume(pv, pvc, volumes_root)
    (path / "file").write_text("data")
    name = pv["metadata"]["name"]
    api.patch(volume_path(name), {"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    try:
        delete_pod_and_claim(api, "keep-user", "keep")
        eventually(
            lambda: api.get(volume_path(name))["status"].get("phase") == "Released",
            f"the PV controller marks {name} Released",
        )
        time.sleep(3)  # the provisioner has seen it by now
        assert api.get(volume_path(name))["status"]["phase"] == "Released"
        assert (path / "file").read_text() == "data"
    finally:
        _delete(api, volume_path(name))


def test_statefulset_claims_are_provisioned_and_bound(
    api: ApiClient, namespace: str, provisioner: Provisioner, volumes_root: Path
) -> None:
    template = pod_spec([])
    template["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    api.create(
        f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {
                "serviceName": "web",
                "replicas": 2,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template},
                "volumeClaimTemplates": [
                    {
                        "metadata": {
                            "name": "data",
                            "annotations": {OWNER_ANNOTATION: provisioner.identity},
                        },
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "128Mi"}},
                        },
                    }
                ],
            },
        },
    )
    paths = set()
    for ordinal in (0, 1):
        pvc, pv = wait_bound(api, f"data-web-{ordinal}")
        paths.add(check_local_volume(pv, pvc, volumes_root))
    assert len(paths) == 2
    for ordinal in (0, 1):
        wait_scheduled(api, f"web-{ordinal}")


def test_immediate_binding_gets_a_host_path_volume_without_a_pod(
    api: ApiClient,
    namespace: str,
    provisioner: Provisioner,
    volumes_root: Path,
    immediate_class: str,
) -> None:
    create_claim(api, provisioner, "now", storage_class=IMMEDIATE_CLASS)
    pvc, pv = wait_bound(api, "now")
    assert pv["metadata"]["name"] == f"pvc-{pvc['metadata']['uid']}"
    assert "nodeAffinity" not in pv["spec"]
    assert "local" not in pv["spec"]
    path = Path(pv["spec"]["hostPath"]["path"])
    assert path.parent == volumes_root.resolve()
    assert path.is_dir()
    assert pv["spec"]["storageClassName"] == IMMEDIATE_CLASS


def test_two_provisioners_provision_each_claim_once(
    api: ApiClient,
    namespace: str,
    provisioner: Provisioner,
    volumes_root: Path,
    immediate_class: str,
    tmp_path: Path,
) -> None:
    """Unowned claims, two provisioners racing: one PV and one directory per claim."""
    other_root = tmp_path / "other-volumes"
    other = Provisioner(api, other_root)
    stop = threading.Event()
    thread = threading.Thread(target=other.run, args=(stop,), name="other-provisioner")
    thread.start()
    names = [f"race-{i}" for i in range(4)]
    try:
        for name in names:
            api.create(
                f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                        "storageClassName": immediate_class,
                    },
                },
            )
        roots = {p.identity: Path(p.identity) for p in (provisioner, other)}
        volumes = set()
        for name in names:
            pvc, pv = wait_bound(api, name)
            # Another node agent's provisioner may have won too: check the owner's root.
            owner = pvc["metadata"]["annotations"][OWNER_ANNOTATION]
            assert pv["metadata"]["annotations"][OWNER_ANNOTATION] == owner
            path = Path(pv["spec"]["hostPath"]["path"])
            assert path.is_dir()
            if owner in roots:
                assert path.parent == roots[owner]
            volumes.add(pv["metadata"]["name"])
        for volume in volumes:  # a loser made no directory
            assert len([root for root in roots.values() if (root / volume).exists()]) <= 1
        if other_root.exists():
            assert {p.name for p in other_root.iterdir()} <= volumes
    finally:
        for name in names:
            _delete(api, claim_path(name))
        eventually(
            lambda: (
                not any(
                    (pv["spec"].get("claimRef") or {}).get("name", "").startswith("race-")
                    for pv in api.get("/api/v1/persistentvolumes")["items"]
                )
            ),
            "both provisioners delete their released volumes",
        )
        stop.set()
        thread.join(timeout=provisioner_module.WATCH_SECONDS + 30)
    assert not thread.is_alive()


def test_a_path_outside_the_root_is_never_deleted(
    api: ApiClient, namespace: str, provisioner: Provisioner, tmp_path: Path
) -> None:
    """A released volume that claims to be ours but points elsewhere: refused, kept."""
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "file").write_text("keep me")
    name = "storage-test-outside"
    api.create(
        "/api/v1/persistentvolumes",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {
                    "pv.kubernetes.io/provisioned-by": PROVISIONER,
                    OWNER_ANNOTATION: provisioner.identity,
                },
            },
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(outside), "type": "Directory"},
                # Bound to a claim that does not exist: the PV controller releases it.
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "namespace": NAMESPACE,
                    "name": "ghost",
                    "uid": "00000000-0000-0000-0000-000000000001",
                },
            },
        },
    )
    try:

        def released() -> JSON | None:
            found = api.get(volume_path(name))
            return found if found["status"].get("phase") == "Released" else None

        pv = eventually(released, f"the PV controller marks {name} Released")
        provisioner.sync_volume(pv)  # directly, as well as through the running watch
        time.sleep(2)
        assert (outside / "file").read_text() == "keep me"
        assert api.get(volume_path(name))["status"]["phase"] == "Released"
    finally:
        _delete(api, volume_path(name))


# --- without the control plane ----------------------------------------------------------------


class FailingApi(ApiClient):
    """An API client that must not be used."""

    def __init__(self) -> None:
        pass

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> JSON:
        raise AssertionError(f"unexpected API call: {method} {path}")

    def watch(self, path: str, **kwargs: Any) -> Iterator[tuple[str, JSON]]:
        raise AssertionError(f"unexpected watch of {path}")


def _released(name: str, path: str, **annotations: str) -> JSON:
    return {
        "metadata": {
            "name": name,
            "uid": "u-1",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER, **annotations},
        },
        "spec": {"persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": path}},
        "status": {"phase": "Released"},
    }


def test_escaping_paths_are_refused_before_any_api_call(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("keep me")
    (root / "pvc-link").symlink_to(outside)
    (root / "pvc-inner").mkdir()
    (root / "pvc-inner" / "nested").mkdir()
    provisioner = Provisioner(FailingApi(), root)
    for path in (
        f"{root}/../outside",  # lexically inside root
        f"{root}/pvc-link",  # a symlink out of root
        str(outside),
        str(root),  # the root itself
        f"{root}/pvc-inner/nested",  # not directly in root
        "relative/path",
        "",
    ):
        provisioner.sync_volume(_released("pv-x", path))
    assert (outside / "file").read_text() == "keep me"
    assert (root / "pvc-inner" / "nested").is_dir()


def test_objects_that_are_not_ours_are_left_alone(tmp_path: Path) -> None:
    provisioner = Provisioner(FailingApi(), tmp_path)
    inside = str(tmp_path / "pvc-1")
    os.mkdir(inside)
    other = {OWNER_ANNOTATION: "/some/other/root"}
    retained = _released("pv-r", inside)
    retained["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    bound = _released("pv-b", inside)
    bound["status"]["phase"] = "Bound"
    foreign = _released("pv-f", inside)
    foreign["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] = "someone/else"
    for pv in (_released("pv-o", inside, **other), retained, bound, foreign):
        provisioner.sync_volume(pv)
    assert os.path.isdir(inside)

    def claim(annotations: JSON, **spec: Any) -> JSON:
        return {
            "metadata": {"name": "c", "namespace": "n", "uid": "u", "annotations": annotations},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}, **spec},
            "status": {"phase": "Pending"},
        }

    wanted = {"volume.kubernetes.io/storage-provisioner": PROVISIONER}
    for pvc in (
        claim({}),  # the PV controller has not asked for provisioning
        claim({"volume.kubernetes.io/storage-provisioner": "someone/else"}),
        claim({**wanted, **other}),  # claimed by another provisioner
        claim(wanted, volumeName="pv-1"),  # bound already
    ):
        provisioner.sync_claim(pvc)


class RacingApi(ApiClient):
    """The PV does not exist when looked up, but does when created (another sync won)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> JSON:
        self.calls.append((method, path))
        if (method, path) == ("GET", f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}"):
            return {
                "metadata": {"name": STORAGE_CLASS},
                "provisioner": PROVISIONER,
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        if (method, path) == ("GET", "/api/v1/nodes/n1"):
            return {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "host-1"}}}
        if (method, path) == ("GET", "/api/v1/persistentvolumes/pvc-u1"):
            raise ApiError(404, "NotFound", "not found")
        if method == "PATCH" and path.endswith("/persistentvolumeclaims/c"):
            return {}
        if (method, path) == ("POST", "/api/v1/persistentvolumes"):
            raise ApiError(409, "AlreadyExists", "persistentvolumes pvc-u1 already exists")
        raise AssertionError(f"unexpected API call: {method} {path}")


def test_creating_an_existing_volume_is_harmless(tmp_path: Path) -> None:
    api = RacingApi()
    provisioner = Provisioner(api, tmp_path)
    provisioner.sync_claim(
        {
            "metadata": {
                "name": "c",
                "namespace": "n",
                "uid": "u1",
                "resourceVersion": "7",
                "annotations": {
                    "volume.kubernetes.io/storage-provisioner": PROVISIONER,
                    "volume.kubernetes.io/selected-node": "n1",
                },
            },
            "spec": {
                "storageClassName": STORAGE_CLASS,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
            "status": {"phase": "Pending"},
        }
    )
    assert [c[0] for c in api.calls] == ["GET", "GET", "GET", "PATCH", "POST"]
    assert (tmp_path / "pvc-u1").is_dir()


class ScriptedApi(ApiClient):
    """Lists and watches that fail in the ways a real apiserver's do, then stop the loop."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.lists = 0
        self.watches: list[str] = []

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> JSON:
        assert method == "GET", path
        if path == provisioner_module.VOLUMES:
            return {"metadata": {"resourceVersion": "1"}, "items": []}
        assert path == provisioner_module.CLAIMS
        self.lists += 1
        if self.lists == 1:
            raise ApiError(500, "InternalError", "etcd is down")
        return {
            "metadata": {"resourceVersion": str(10 * self.lists)},
            "items": [
                {"metadata": {"name": "bad"}},
                {"metadata": {"name": f"listed-{self.lists}"}},
            ],
        }

    def watch(
        self, path: str, *, resource_version: str, **kwargs: Any
    ) -> Iterator[tuple[str, JSON]]:
        if path == provisioner_module.VOLUMES:
            time.sleep(0.05)
            return
        self.watches.append(resource_version)
        count = len(self.watches)
        if count == 1:
            raise ApiError(410, "Expired", "too old resource version")
        if count == 2:
            yield "ERROR", {"kind": "Status", "code": 410, "reason": "Expired"}
            raise AssertionError("the watch went on after an ERROR event")
        if count == 3:
            yield "ADDED", {"metadata": {"name": "bad", "resourceVersion": "41"}}
            yield "MODIFIED", {"metadata": {"name": "watched", "resourceVersion": "42"}}
            yield "BOOKMARK", {"metadata": {"resourceVersion": "43"}}
            raise ApiError(0, "ConnectionFailed", "connection reset")
        self.stop.set()


def test_run_survives_expired_watches_api_errors_and_bad_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(provisioner_module, "BACKOFF_INITIAL", 0.05)
    stop = threading.Event()
    api = ScriptedApi(stop)
    synced: list[str] = []

    class Recording(Provisioner):
        def sync_claim(self, pvc: JSON) -> None:
            name = pvc["metadata"]["name"]
            synced.append(name)
            if name == "bad":
                raise KeyError("spec")

    thread = threading.Thread(target=Recording(api, Path("/nonexistent")).run, args=(stop,))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert api.lists >= 5  # error; after the 410 reply; after the 410 event; after the reset
    # Each watch starts from the latest list's resourceVersion.
    assert api.watches[:4] == ["20", "30", "40", "50"]
    assert synced[:6] == ["bad", "listed-2", "bad", "listed-3", "bad", "listed-4"]
    assert "watched" in synced  # after a bad object in the same watch
