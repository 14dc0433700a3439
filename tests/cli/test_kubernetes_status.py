"""`redkube status NAME` against Kubernetes: which cluster it asks, and one clear line when it
cannot (the happy path runs in tests/operator/test_kubectl_workflow.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testbed import ControlPlane
from tests.cli.test_bad_input import ERROR, assert_one_line_error


def status(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redkube", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_without_a_kubeconfig_it_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    done = status("shop", "--kubeconfig", str(missing), env={})
    assert_one_line_error(done, ERROR, f"no kubeconfig at {missing}")


def test_a_kubeconfig_without_a_current_context_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    done = status("shop", "--kubeconfig", str(broken), env={})
    assert_one_line_error(done, ERROR, f"kubeconfig {broken} has no complete current context")


def test_no_local_cluster_and_no_kubeconfig_is_the_local_error(tmp_path: Path) -> None:
    env = {"REDKUBE_HOME": str(tmp_path / "state"), "KUBECONFIG": str(tmp_path / "absent")}
    done = status("shop", env=env)
    assert_one_line_error(done, ERROR, "no cluster named 'shop'")


def test_an_unknown_rediscluster_is_named_with_its_namespace(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """No local cluster has the name, and $KUBECONFIG points at the test bed: Kubernetes is asked,
    in the context's namespace."""
    env = {"REDKUBE_HOME": str(tmp_path / "state"), "KUBECONFIG": str(control_plane.kubeconfig)}
    control_plane.kubectl("apply", "-f", str(Path(__file__).parents[2] / "deploy" / "crd.yaml"))
    done = status("nosuch", env=env)
    assert_one_line_error(done, ERROR, "no RedisCluster 'nosuch' in namespace 'default'")
    done = status("nosuch", "-n", "elsewhere", env=env)
    assert_one_line_error(done, ERROR, "no RedisCluster 'nosuch' in namespace 'elsewhere'")


def test_an_unreachable_apiserver_is_one_line(control_plane: ControlPlane, tmp_path: Path) -> None:
    config = json.loads(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "config"
    dead.write_text(json.dumps(config))
    done = status("shop", "--kubeconfig", str(dead), env={})
    assert_one_line_error(done, ERROR, "Kubernetes API https://127.0.0.1:1")
