"""A real Prometheus (built from its Go module by scripts/build-prometheus.sh) scrapes the
supervisor of a real local cluster: the queries a dashboard and the alerts use return what the
cluster is, and follow it when a node dies and comes back. promtool lints the exposition."""

from __future__ import annotations

import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters import Redkube, wait_for
from tests.conftest import VALKEY, server_path
from tests.observability.prometheus import (
    Prometheus,
    assert_dashboard_queries_answer,
    prometheus_dir,
    running_prometheus,
)
from tests.operator.conftest import free_port


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_port: int) -> Iterator[Prometheus]:
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: redkube\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    with running_prometheus(tmp_path, config) as server:
        yield server


def test_prometheus_sees_the_cluster_and_follows_a_node_death(
    redkube: Redkube, prometheus: Prometheus, metrics_port: int
) -> None:
    path = server_path(VALKEY)
    assert path is not None
    cluster = redkube.up_cluster(
        "watched", 3, 1, path, "--metrics-port", str(metrics_port), "--config", "maxmemory=64mb"
    )
    up = redkube.ok("status", "watched").stdout
    assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in up, up

    def scraped(expr: str, expected: float) -> bool | None:
        return True if prometheus.value(expr) == expected else None

    wait_for(lambda: scraped('up{job="redkube"}', 1), 60, "the first scrape")
    wait_for(lambda: scraped('redkube_cluster_phase{phase="Ready"}', 1), 60, "phase Ready")
    for expr, expected in (
        ("redkube_cluster_slots_covered", 16384),
        ("redkube_cluster_nodes_ready", 6),
        ("redkube_cluster_nodes_desired", 6),
        ("redkube_cluster_masters_without_replica", 0),
        ("redkube_cluster_open_slots", 0),
        ("count(redkube_node_up == 1)", 6),
        ('count(redkube_node_keys{role="master"})', 3),
        ("count(redkube_node_replication_lag_bytes)", 3),
        ("max(redkube_node_maxmemory_bytes)", 64 * 1024 * 1024),
        ("sum(redkube_node_slots)", 16384),
        ('redkube_steps_total{kind="add_slots"}', 1),
    ):
        assert prometheus.value(expr) == expected, expr

    # Writes show in the nodes' own INFO counters, scraped into the supervisor's metrics.
    client = cluster.cluster_client()
    for i in range(2000):
        client.set(f"key:{i}", "x")
    wait_for(lambda: scraped("sum(redkube_node_keys)", 4000), 60, "every key, on both copies")
    assert_dashboard_queries_answer(prometheus, "watched", exporters=False)

    # A node killed: the supervisor starts it again, a step the counter keeps for good.
    replica = next(name for name, role in cluster.roles().items() if role == "slave")
    redkube.ok("kill", replica)
    wait_for(
        lambda: scraped('redkube_steps_total{kind="start_members"}', 2), 60, "the restart counted"
    )
    wait_for(lambda: scraped("redkube_cluster_nodes_ready", 6), 60, "every node ready again")
    assert prometheus.value('redkube_cluster_phase{phase="Ready"}') == 1


def test_promtool_finds_nothing_to_fix_in_the_exposition(
    redkube: Redkube, metrics_port: int
) -> None:
    path = server_path(VALKEY)
    assert path is not None
    redkube.up_cluster("linted", 1, 1, path, "--metrics-port", str(metrics_port))
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        exposition = reply.read().decode()
    assert 'redkube_cluster_phase{cluster="linted",phase="Ready"} 1.0' in exposition
    done = subprocess.run(
        [str(prometheus_dir() / "promtool"), "check", "metrics"],
        input=exposition, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
