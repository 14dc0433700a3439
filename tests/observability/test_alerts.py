"""The alert rules, checked by promtool (built from Prometheus' Go module): they parse, each
fires when it should and not on a healthy cluster (alerts-test.yaml), and each has its runbook
section in docs/alerts.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.observability.test_local_metrics import prometheus_dir

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "redkube" / "files" / "redkube-alerts.yaml"
UNIT_TESTS = Path(__file__).parent / "alerts-test.yaml"
RUNBOOKS = ROOT / "docs" / "alerts.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prometheus_dir() / "promtool"), *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=UNIT_TESTS.parent,
    )  # fmt: skip


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout, done.stdout


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    done = promtool("test", "rules", UNIT_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    assert tested == {str(rule["alert"]) for rule in alerts()}


def test_each_alert_has_its_runbook() -> None:
    sections = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), re.M))
    for rule in alerts():
        name = str(rule["alert"])
        assert name in sections, f"{name} has no section in {RUNBOOKS.name}"
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"docs/alerts.md#{name.lower()}"
