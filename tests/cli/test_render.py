"""`redkube render -f`: a RedisCluster file becomes every object the operator would create."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: cache, namespace: shop}
spec: {shards: 2, replicasPerShard: 1, storage: {size: 1Gi}}
"""


def render(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redkube", "render", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_render_prints_every_object(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    done = render("-f", str(path))
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert names == [
        ("Secret", "cache-auth"), ("ConfigMap", "cache-config"), ("Service", "cache-nodes"),
        ("Service", "cache"), ("NetworkPolicy", "cache-network"),
        ("StatefulSet", "cache-0"), ("PodDisruptionBudget", "cache-0"),
        ("StatefulSet", "cache-1"), ("PodDisruptionBudget", "cache-1"),
    ]  # fmt: skip
    assert render("-f", "-", stdin=CLUSTER).returncode == 0


def test_render_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    cases = {
        "missing.yaml": None,
        "broken.yaml": "kind: [unclosed\n",
        "other.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        "version.yaml": CLUSTER.replace("redkube.io/v1alpha1", "redkube.io/v9"),
        "zero.yaml": CLUSTER.replace("shards: 2", "shards: 0"),
        "config.yaml": CLUSTER.replace("storage:", "config: {requirepass: x}, storage:"),
    }
    expected = {
        "missing.yaml": "cannot read",
        "broken.yaml": "is not valid YAML",
        "other.yaml": "holds no RedisCluster",
        "version.yaml": "apiVersion must be redkube.io/v1alpha1",
        "zero.yaml": "shards must be at least 1",
        "config.yaml": "keys the operator manages: requirepass",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        done = render("-f", str(path))
        assert done.returncode != 0, name
        assert done.stdout == "", name
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected[name] in lines[0], (name, done.stderr)
