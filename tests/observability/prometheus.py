"""A real Prometheus (built from its Go module by scripts/build-prometheus.sh) for the tests: it
starts with a given configuration and answers instant queries; and the checks that every query
of redkube's Grafana dashboard answers."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clusters import wait_for
from tests.operator.conftest import free_port

VERSION = "v0.316.0"  # scripts/build-prometheus.sh
REPOSITORY = Path(__file__).resolve().parents[2]
DASHBOARD = REPOSITORY / "charts/redkube/files/redkube-dashboard.json"
ALERTS = REPOSITORY / "charts/redkube/files/redkube-alerts.yaml"


def prometheus_dir() -> Path:
    cache = os.environ.get("REDKUBE_BIN_CACHE") or str(Path.home() / ".cache" / "redkube" / "bin")
    found = Path(cache) / f"prometheus-{VERSION}"
    if not (found / "prometheus").is_file():
        pytest.fail(f"{found} missing: run scripts/build-prometheus.sh (make prometheus-binary)")
    return found


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: each series' labels and value."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as reply:
            data = json.loads(reply.read())
        assert data["status"] == "success", data
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def value(self, expr: str) -> float | None:
        """The one value of a query that names one series (None while it has none)."""
        found = self.query(expr)
        assert len(found) <= 1, found
        return found[0][1] if found else None


@contextmanager
def running_prometheus(directory: Path, config: str) -> Iterator[Prometheus]:
    """Prometheus with `config` (prometheus.yml text), its data under `directory`; stopped (by
    its process) afterwards."""
    port = free_port()
    path = directory / "prometheus.yml"
    path.write_text(config)
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [str(prometheus_dir() / "prometheus"), f"--config.file={path}",
         f"--storage.tsdb.path={directory / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Prometheus(port)
    try:
        wait_for(lambda: _answers(server), 60, "Prometheus to answer")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _answers(server: Prometheus) -> bool | None:
    try:
        server.query("vector(1)")
    except OSError:
        return None
    return True


# Panels of counters that nothing in these tests need increment: their queries answer, with no
# series.
MAY_BE_EMPTY = ("Failovers by reason", "Errors and waits")


def assert_dashboard_queries_answer(prometheus: Prometheus, cluster: str, exporters: bool) -> None:
    """Every query of the Grafana dashboard, as Grafana would send it for this cluster, is valid
    PromQL and returns series (but for counters nothing has incremented yet, and, without
    `exporters`, the panels of the nodes' sidecars)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    checked = 0
    for panel in panels:
        for target in panel.get("targets", ()):
            expr = target["expr"].replace("$cluster", cluster).replace("$__rate_interval", "1m")
            found = prometheus.query(expr)
            checked += 1
            from_sidecars = "redis_" in expr.replace("redkube_", "")
            may_be_empty = panel["title"] in MAY_BE_EMPTY and target["legendFormat"] != "waiting"
            if not may_be_empty and (exporters or not from_sidecars):
                assert found, f"{panel['title']}: {expr} returned nothing"
    assert checked >= 23, checked
