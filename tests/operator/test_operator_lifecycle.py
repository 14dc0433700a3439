"""The operator's lifecycle on the test bed: rendered objects pass the apiserver's schemas, two
clusters in two namespaces at once, deletion (owned objects go, PVCs per pvcRetention), and a
new operator finishing a bootstrap the previous one was killed in."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.operator.conftest import CRD, metrics_url, scrape, start_operator
from tests.testbed.kube import JSON, apply, eventually, get, redis_cli

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: %(name)s}
spec:
  shards: %(shards)d
  replicasPerShard: 1
  image: "valkey/valkey:9.1"
  storage: {size: 1Gi}
  pvcRetention: %(retention)s
"""
OWNED = (
    "statefulsets", "services", "configmaps", "poddisruptionbudgets", "secrets", "networkpolicies"
)  # fmt: skip


def manifest(name: str, retention: str = "Retain", shards: int = 3) -> str:
    return CLUSTER % {"name": name, "retention": retention, "shards": shards}


def phase(cp: ControlPlane, namespace: str, name: str) -> str:
    found = get(cp, namespace, "rediscluster", name).get("status") or {}
    return str(found.get("phase", ""))


def names(cp: ControlPlane, namespace: str, kind: str, cluster: str) -> list[str]:
    items = get(cp, namespace, kind, "-l", f"redkube.io/cluster={cluster}")["items"]
    return sorted(i["metadata"]["name"] for i in items)


def test_rendered_objects_pass_the_apiservers_schemas(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    source = tmp_path / "cluster.yaml"
    source.write_text(manifest("render", "Delete").replace("metadata: {name: render}",
                      f"metadata: {{name: render, namespace: {namespace}}}"))  # fmt: skip
    rendered = subprocess.run(
        [sys.executable, "-m", "redkube", "render", "-f", str(source)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=rendered
    )
    created = done.stdout.strip().splitlines()
    # Secret, ConfigMap, 2 Services, NetworkPolicy, 3 x (StatefulSet, PodDisruptionBudget)
    assert len(created) == 1 + 1 + 2 + 1 + 3 * 2, done.stdout
    assert all("(server dry run)" in line for line in created), done.stdout
    # The operator's own manifests: its namespace must exist for a dry run of what goes in it.
    control_plane.kubectl("create", "namespace", "redkube-system", check=False)
    for path in (CRD, Path(__file__).resolve().parents[2] / "deploy" / "operator.yaml"):
        done = control_plane.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-f", str(path)
        )
        assert "(server dry run)" in done.stdout


@pytest.mark.namespace_prefix("op")
def test_two_namespaces_at_once_then_deletion_follows_pvc_retention(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    other = namespace + "-b"
    cp.kubectl("create", "namespace", other)
    try:
        apply(cp, namespace, manifest("keep", "Retain", shards=2))
        apply(cp, other, manifest("drop", "Delete", shards=2))
        eventually(
            lambda: phase(cp, namespace, "keep") == "Ready" and phase(cp, other, "drop") == "Ready",
            "both RedisClusters are Ready",
            180,
        )
        for ns, name in ((namespace, "keep"), (other, "drop")):
            pods = get(cp, ns, "pods", "-l", f"redkube.io/cluster={name}")["items"]
            ips = [p["status"]["podIP"] for p in pods]
            assert len(ips) == 4
            pw_secret = get(cp, ns, "secret", f"{name}-auth")
            assert pw_secret["metadata"]["ownerReferences"][0]["name"] == name
        assert len(names(cp, namespace, "pvc", "keep")) == 4
        assert len(names(cp, other, "pvc", "drop")) == 4

        # The operator's metrics tell both clusters apart, and that it leads.
        url = metrics_url(operator)
        clusters = (f"{namespace}/keep", f"{other}/drop")

        def value(name: str, **labels: str) -> float | None:
            found = [v for n, got, v in scrape(url) if n == name and labels.items() <= got.items()]
            assert len(found) <= 1, (name, labels, found)
            return found[0] if found else None

        assert value("redkube_operator_leader") == 1
        for cluster in clusters:
            assert value("redkube_cluster_phase", cluster=cluster, phase="Ready") == 1
            assert value("redkube_cluster_nodes_ready", cluster=cluster) == 4
            assert value("redkube_cluster_slots_covered", cluster=cluster) == 16384
            assert value("redkube_steps_total", cluster=cluster, kind="add_slots") == 1

        cp.kubectl("delete", "rediscluster", "-n", namespace, "keep", timeout=120)
        cp.kubectl("delete", "rediscluster", "-n", other, "drop", timeout=120)

        def owned_gone() -> bool:
            return not any(
                names(cp, ns, kind, name)
                for ns, name in ((namespace, "keep"), (other, "drop"))
                for kind in (*OWNED, "pods")
            )

        eventually(owned_gone, "the garbage collector removes every owned object and Pod", 180)
        eventually(
            lambda: not any(got.get("cluster") in clusters for _, got, _ in scrape(url)),
            "no metric left of the deleted clusters",
            60,
        )
        eventually(lambda: not names(cp, other, "pvc", "drop"), "pvcRetention Delete: PVCs go")
        assert len(names(cp, namespace, "pvc", "keep")) == 4  # pvcRetention Retain: data stays
    finally:
        cp.kubectl("delete", "namespace", other, "--wait=false", check=False)


@pytest.mark.namespace_prefix("kill")
def test_a_new_operator_finishes_a_bootstrap_without_recreating_anything(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-f", str(CRD))
    log = tmp_path / "operator.log"
    first = start_operator(cp, log, "kill-*")
    try:
        apply(cp, namespace, manifest("resume"))

        def loop_acted() -> bool:
            events = get(cp, namespace, "events", "--field-selector=involvedObject.name=resume")
            return any(e["reason"] == "Reconciling" for e in events["items"])

        eventually(loop_acted, "the first operator's loop takes a step", 120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before: dict[str, JSON] = {
        p["metadata"]["name"]: p
        for p in get(cp, namespace, "pods", "-l", "redkube.io/cluster=resume")["items"]
    }
    password = get(cp, namespace, "secret", "resume-auth")["data"]["password"]

    second = start_operator(cp, log, "kill-*")
    try:
        eventually(
            lambda: phase(cp, namespace, "resume") == "Ready", "the new operator finishes", 180
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    after = {
        p["metadata"]["name"]: p
        for p in get(cp, namespace, "pods", "-l", "redkube.io/cluster=resume")["items"]
    }
    # Nothing was recreated: same Pods (uids), same Secret (password), every node still running.
    assert {n: p["metadata"]["uid"] for n, p in before.items()} == {
        n: p["metadata"]["uid"] for n, p in after.items() if n in before
    }
    assert get(cp, namespace, "secret", "resume-auth")["data"]["password"] == password
    pw = base64.b64decode(password).decode()
    for pod in after.values():
        assert redis_cli(pod["status"]["podIP"], pw, "cluster", "info").startswith(
            "cluster_state:ok"
        )
    cp.kubectl("delete", "rediscluster", "-n", namespace, "resume", "--wait=false")
