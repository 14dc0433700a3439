"""Every Redis Pod's redis_exporter sidecar, and the operator, scraped by a real Prometheus that
finds the Pods the way the chart's nodes PodMonitor tells the Prometheus Operator to (Kubernetes
service discovery, the PodMonitor's own relabelings): every dashboard query and alert expression
answers; an exporter with the wrong password alerts as an exporter error while the cluster stays
Ready; a replica link held down fires its alert and the alert resolves; a master's Pod deleted
counts one failover with its reason. A sidecar whose image cannot be pulled leaves the cluster
Ready, and the status says so."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed import ControlPlane
from tests.charts.test_helm_chart import Helm, helm, values_file  # noqa: F401 (the fixture)
from tests.observability.prometheus import (
    ALERTS,
    Prometheus,
    assert_dashboard_queries_answer,
    running_prometheus,
)
from tests.operator.conftest import free_port, metrics_url
from tests.operator.test_kubectl_workflow import password, roles, running_pods, status
from tests.testbed.kube import JSON, apply, eventually, pods, redis_cli

# The sidecar image's binary (scripts/build-redis-exporter.sh), run beside the Pods.
EXPORTER = Path.home() / ".cache/redkube/bin/redis-exporter-v1.74.0/redis_exporter"
CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: shop}
spec:
  shards: 3
  replicasPerShard: 1
  image: valkey/valkey:9.1
%(extra)s
"""


def ready(cp: ControlPlane, namespace: str) -> bool:
    found = status(cp, namespace)
    return found.get("phase") == "Ready" and found.get("readyNodes") == "6/6"


def node_scrape_config(helm: Helm, tmp_path: Path, kubeconfig: Path) -> JSON:  # noqa: F811
    """The chart's nodes PodMonitor as a plain Prometheus scrape job: pods found through the
    Kubernetes API, kept when they carry the PodMonitor's label and port, relabelled by its own
    relabelings (what the Prometheus Operator generates from it)."""
    values = values_file(tmp_path, {"monitoring": {"nodePodMonitor": {"enabled": True}}})
    (monitor,) = [o for o in helm.template(values) if o["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (selector,) = monitor["spec"]["selector"]["matchExpressions"]
    assert selector["operator"] == "Exists"
    label = re.sub(r"[^a-zA-Z0-9_]", "_", selector["key"])
    relabelings: list[JSON] = [
        {"source_labels": [f"__meta_kubernetes_pod_label_{label}"], "regex": ".+",
         "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
         "regex": endpoint["port"], "action": "keep"},
    ]  # fmt: skip
    for given in endpoint["relabelings"]:
        converted: JSON = {
            "source_labels": given["sourceLabels"],
            "target_label": given["targetLabel"],
        }
        if "separator" in given:
            converted["separator"] = given["separator"]
        relabelings.append(converted)
    return {
        "job_name": "redis-nodes",
        "metrics_path": endpoint["path"],
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": relabelings,
    }


def quick_alerts(directory: Path) -> Path:
    """The alert file with every `for:` cut to 2 s: the same expressions, firing in a test's
    time."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    path = directory / "alerts.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def firing(prometheus: Prometheus, cluster: str) -> list[dict[str, str]]:
    return [
        labels
        for labels, _ in prometheus.query(f'ALERTS{{alertstate="firing",cluster="{cluster}"}}')
    ]


@pytest.mark.timeout(720)
@pytest.mark.namespace_prefix("op")
def test_prometheus_scrapes_every_nodes_sidecar_and_the_operator(
    control_plane: ControlPlane,
    operator: Path,
    namespace: str,
    helm: Helm,  # noqa: F811
    tmp_path: Path,
) -> None:
    cp = control_plane
    # A memory limit, so that maxmemory is set (the dashboard draws it).
    apply(cp, namespace, CLUSTER % {"extra": "  resources: {limits: {memory: 256Mi}}"})
    eventually(lambda: ready(cp, namespace), "Ready with 6/6 nodes", 240)
    listed = eventually(
        lambda: len(running_pods(cp, namespace)) == 6 and running_pods(cp, namespace),
        "6 Pods Ready",
        120,
    )
    for name, pod in listed.items():
        states = {c["name"]: c for c in pod["status"]["containerStatuses"]}
        assert set(states) == {"server", "metrics"}, name
        assert all(c["ready"] and "running" in c["state"] for c in states.values()), states
    pw = password(cp, namespace)
    # The sidecar reads the password from the Secret: no Pod object holds it.
    assert pw not in json.dumps(listed)

    cluster = f"{namespace}/shop"
    operator_target = metrics_url(operator).removeprefix("http://").removesuffix("/metrics")
    # The sidecar's exporter with the wrong password, beside the Pods, aimed at shop-0-0: an
    # exporter error, never a Redis outage.
    wrong_port = free_port()
    wrong = subprocess.Popen(
        [str(EXPORTER)],
        env={"REDIS_ADDR": f"redis://{listed['shop-0-0']['status']['podIP']}:6379",
             "REDIS_PASSWORD": "not-the-password",
             "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{wrong_port}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(quick_alerts(tmp_path))],
        "scrape_configs": [
            node_scrape_config(helm, tmp_path, cp.kubeconfig),
            {"job_name": "redkube-operator", "static_configs": [{"targets": [operator_target]}]},
            {"job_name": "wrong-credentials", "static_configs": [{
                "targets": [f"127.0.0.1:{wrong_port}"],
                "labels": {"cluster": cluster, "node": "wrong-credentials"}}]},
        ],
    }  # fmt: skip
    try:
        with running_prometheus(tmp_path, yaml.safe_dump(config)) as prometheus:
            check_metrics_alerts_and_failovers(cp, namespace, cluster, listed, prometheus)
    finally:
        wrong.kill()  # it may sit out SIGTERM while it retries its node
        wrong.wait(timeout=10)


def check_metrics_alerts_and_failovers(
    cp: ControlPlane, namespace: str, cluster: str, listed: dict[str, JSON], prometheus: Prometheus
) -> None:
    pw = password(cp, namespace)
    up = f'redis_up{{cluster="{cluster}",job="redis-nodes"}}'
    eventually(
        lambda: len([v for _, v in prometheus.query(up) if v == 1]) == 6,
        "6 sidecars scraped, each reading its node",
        90,
    )
    labelled = {(s["node"], s["shard"]) for s, _ in prometheus.query(up)}
    assert labelled == {(name, name.split("-")[1]) for name in listed}, labelled
    # Enough scrapes of the operator for rates over them (increase() needs two samples).
    phase = f'redkube_cluster_phase{{cluster="{cluster}",phase="Ready"}}'
    eventually(
        lambda: (prometheus.value(f"count_over_time({phase}[1m])") or 0) >= 5,
        "5 scrapes of the operator's series",
        60,
    )
    assert prometheus.value(phase) == 1
    eventually(
        lambda: len(prometheus.query(f'redis_master_link_up{{cluster="{cluster}"}}')) == 3,
        "the replicas' link series",
        60,
    )
    assert_dashboard_queries_answer(prometheus, cluster, exporters=True)
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            prometheus.query(rule["expr"])  # evaluates (an error fails the query)
    # Only the exporter with the wrong password alerts; the cluster stays Ready.
    eventually(
        lambda: (
            [a["alertname"] for a in firing(prometheus, cluster)]
            == ["RedkubeExporterCannotReadNode"]
        ),
        "RedkubeExporterCannotReadNode firing for the wrong credentials, nothing else",
        60,
    )
    assert [a["node"] for a in firing(prometheus, cluster)] == ["wrong-credentials"]
    assert prometheus.value(f'redis_up{{cluster="{cluster}",node="wrong-credentials"}}') == 0
    assert prometheus.value(phase) == 1 and ready(cp, namespace)

    # A replica's link held down: a wrong masterauth, its link to the master cut.
    replica = next(name for name, role in roles(cp, namespace, pw).items() if role == "slave")
    replica_ip = listed[replica]["status"]["podIP"]
    assert redis_cli(replica_ip, pw, "config", "set", "masterauth", "not-the-password") == "OK"
    redis_cli(replica_ip, pw, "client", "kill", "type", "master")
    eventually(
        lambda: any(
            a["alertname"] == "RedkubeReplicaLinkDown" and a["node"] == replica
            for a in firing(prometheus, cluster)
        ),
        f"RedkubeReplicaLinkDown firing for {replica}",
        120,
    )
    assert redis_cli(replica_ip, pw, "config", "set", "masterauth", pw) == "OK"
    eventually(
        lambda: not any(a["alertname"] == "RedkubeReplicaLinkDown"
                        for a in firing(prometheus, cluster)),
        "RedkubeReplicaLinkDown resolved",
        120,
    )  # fmt: skip

    # A master's Pod deleted: its preStop hook hands the role over; the operator counts it.
    failovers = f'redkube_failovers_total{{cluster="{cluster}"}}'
    assert prometheus.query(failovers) == []
    master = next(name for name, role in roles(cp, namespace, pw).items() if role == "master")
    cp.kubectl("delete", "pod", "-n", namespace, master, "--wait=false")
    eventually(
        lambda: prometheus.value(f'{failovers[:-1]},reason="pod_deleted"}}') == 1,
        "one failover counted, reason pod_deleted",
        180,
    )
    eventually(lambda: ready(cp, namespace), "Ready with 6/6 nodes again", 240)
    counted = {s["reason"]: v for s, v in prometheus.query(failovers)}
    # Once back, the deleted master's shard may be failed over again to spread the masters.
    assert counted.get("pod_deleted") == 1 and set(counted) <= {"pod_deleted", "spreading"}, counted


@pytest.mark.timeout(420)
@pytest.mark.namespace_prefix("op")
def test_a_sidecar_image_that_cannot_be_pulled_leaves_the_cluster_ready_and_is_named(
    control_plane: ControlPlane, operator: Path, namespace: str
) -> None:
    cp = control_plane
    metrics = "  metrics: {image: localhost/no-such-exporter:1}"
    apply(cp, namespace, CLUSTER % {"extra": metrics})
    eventually(lambda: ready(cp, namespace), "Ready with 6/6 nodes, sidecars missing", 240)

    def named() -> bool:
        found = status(cp, namespace)
        said = " ".join([found.get("message", ""), *found.get("problems", [])])
        return "metrics sidecar" in said and "the node serves without its metrics" in said

    eventually(named, "the status names the sidecar that cannot start", 60)
    listed = pods(cp, namespace, "redkube.io/cluster=shop")
    assert len(listed) == 6
    for pod in listed.values():
        states = {c["name"]: c["state"] for c in pod["status"]["containerStatuses"]}
        assert "running" in states["server"], states
        assert states["metrics"].get("waiting", {}).get("reason") in (
            "ErrImagePull",
            "ImagePullBackOff",
        ), states
