"""kube-score, a Kubernetes manifest scanner we did not write (built from its Go module by
scripts/build-kube-score.sh), on every manifest redkube ships: what `redkube render` prints for
the example RedisCluster, the Helm chart as rendered, and deploy/operator.yaml. Each finding is
fixed or listed with its reason in deploy/kube-score-ignore.txt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.charts.test_helm_chart import CHART, NAMESPACE, RELEASE, Helm
from tests.charts.test_helm_chart import helm as helm  # the fixture

ROOT = Path(__file__).resolve().parents[2]
IGNORE_FILE = ROOT / "deploy" / "kube-score-ignore.txt"
VERSION = "v1.20.0"  # scripts/build-kube-score.sh


def kube_score() -> str:
    cache = os.environ.get("REDKUBE_BIN_CACHE") or str(Path.home() / ".cache" / "redkube" / "bin")
    path = Path(cache) / f"kube-score-{VERSION}" / "kube-score"
    if not path.is_file():
        pytest.fail(f"{path} missing: run scripts/build-kube-score.sh (make scanner-binary)")
    return str(path)


def ignored() -> list[tuple[str, str, str]]:
    """(kind, what, reason) of each line of the ignore file."""
    entries = []
    for line in IGNORE_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, what, reason = [*line.split(maxsplit=2), "", ""][:3]
        entries.append((kind, what, reason))
    return entries


def options() -> list[str]:
    found: list[str] = []
    for kind, what, _ in ignored():
        found += ["--ignore-test", what] if kind == "test" else [what]
    return found


def score(manifests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kube_score(), "score", "--output-format", "ci", *options(), "-"],
        input=manifests, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def findings(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith(("[CRITICAL]", "[WARN"))]


def render_example() -> str:
    example = str(ROOT / "examples" / "rediscluster.yaml")
    return subprocess.run(
        [sys.executable, "-m", "redkube", "render", "-f", example],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def test_every_ignored_finding_is_a_known_check_with_a_reason() -> None:
    listed = subprocess.run(
        [kube_score(), "list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    known = {line.split(",")[0] for line in listed.splitlines() if line}
    asked = subprocess.run(
        [kube_score(), "score", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    helped = asked.stdout + asked.stderr
    entries = ignored()
    assert entries
    for kind, what, reason in entries:
        assert kind in ("test", "flag"), kind
        assert what in known if kind == "test" else f"{what} " in helped, what
        assert len(reason.split()) >= 8, f"{what}: say why"


def test_redkube_render_of_the_example_passes() -> None:
    rendered = render_example()
    assert "kind: StatefulSet" in rendered and "kind: NetworkPolicy" in rendered
    done = score(rendered)
    assert not findings(done) and done.returncode == 0, done.stdout + done.stderr


def test_the_operators_manifests_pass(helm: Helm) -> None:
    chart = helm.run("template", RELEASE, str(CHART), f"--namespace={NAMESPACE}").stdout
    assert "kind: NetworkPolicy" in chart and "kind: PodDisruptionBudget" in chart
    for manifests in (chart, (ROOT / "deploy" / "operator.yaml").read_text()):
        done = score(manifests)
        assert not findings(done) and done.returncode == 0, done.stdout + done.stderr


def test_the_scanner_finds_what_the_ignore_file_does_not_cover() -> None:
    """The check can fail: the same render without the ignore file has findings."""
    rendered = render_example()
    done = subprocess.run(
        [kube_score(), "score", "--output-format", "ci", "-"],
        input=rendered, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert any("CPU limit is not set" in line for line in findings(done)), done.stdout
    assert done.returncode != 0
