"""The operator and `redkube status` with a kubeconfig whose user is an `exec:` credential plugin
(how GKE and EKS authenticate), against the test bed's real apiserver, across a token rotation.

The plugin is a script that asks the apiserver for a service-account token bound to a Secret it
creates (`kubectl create token --bound-object-kind Secret`); deleting those Secrets revokes every
token it gave, so the operator must run the plugin again to go on.
"""

from __future__ import annotations

import json
import ssl
import stat
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from testbed import ControlPlane
from tests.operator.conftest import install_crd, redkube_status, start_operator, stop_operator
from tests.testbed.kube import JSON, apply, eventually, get

pytestmark = pytest.mark.namespace_prefix("exec")

ACCOUNT = "redkube-exec"
DEFAULT_LEASE = ("--lease-duration=15", "--renew-deadline=10", "--retry-period=2")
PLUGIN = """#!{python}
import datetime, json, os, subprocess
folder = os.path.dirname(os.path.abspath(__file__))
runs = os.path.join(folder, "runs")
count = sum(1 for _ in open(runs)) + 1 if os.path.exists(runs) else 1
kubectl = [{kubectl!r}, "--kubeconfig={admin}", "-n", {namespace!r}]
secret = "exec-token-%d" % count
subprocess.run(kubectl + ["create", "secret", "generic", secret, "--from-literal=k=v"],
               check=True, capture_output=True)
token = subprocess.run(
    kubectl + ["create", "token", {account!r}, "--bound-object-kind=Secret",
               "--bound-object-name=" + secret, "--duration=10m"],
    check=True, capture_output=True, text=True).stdout.strip()
with open(runs, "a") as out:
    out.write(token + "\\n")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": token,
                             "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


def exec_kubeconfig(cp: ControlPlane, folder: Path, namespace: str) -> Path:
    """The test bed's kubeconfig with its user replaced by the plugin (relative to the file)."""
    script = folder / "bin" / "token-plugin"
    script.parent.mkdir()
    kubectl = str(cp.bindir / "kubectl")
    plugin = PLUGIN.format(
        python=sys.executable, kubectl=kubectl, admin=cp.kubeconfig,
        namespace=namespace, account=ACCOUNT,
    )  # fmt: skip
    script.write_text(plugin)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    config = json.loads(cp.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "./bin/token-plugin",
                "interactiveMode": "Never",
            }
        }
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    path = folder / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def tokens(folder: Path) -> list[str]:
    runs = folder / "bin" / "runs"
    return runs.read_text().split() if runs.exists() else []


def api_status(cp: ControlPlane, token: str) -> int:
    """The apiserver's answer to a plain GET with this bearer token."""
    assert cp.certificates is not None
    context = ssl.create_default_context(cafile=str(cp.certificates.ca.cert))
    request = urllib.request.Request(
        f"{cp.apiserver_url}/api/v1/namespaces", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


def cluster_status(cp: ControlPlane, namespace: str) -> JSON:
    found: JSON = get(cp, namespace, "rediscluster", "plugged").get("status") or {}
    return found


@pytest.mark.timeout(400)
def test_operator_and_status_with_an_exec_plugin_survive_a_token_rotation(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    install_crd(cp)
    cp.kubectl("create", "serviceaccount", ACCOUNT, "-n", namespace)
    binding = f"{namespace}-admin"
    cp.kubectl(
        "create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{ACCOUNT}",
    )  # fmt: skip
    kubeconfig = exec_kubeconfig(cp, tmp_path, namespace)
    log = tmp_path / "operator.log"
    # The default lease periods: every renewal may wait for the plugin (a Python process
    # that runs kubectl twice), which kopf's re-authentication runs too.
    operator = start_operator(
        cp, log, "exec-*", f"--kubeconfig={kubeconfig}", *DEFAULT_LEASE, lease="redkube-exec"
    )
    try:
        apply(cp, namespace, "apiVersion: redkube.io/v1alpha1\nkind: RedisCluster\n"
              "metadata: {name: plugged}\nspec: {shards: 3, replicasPerShard: 0, "
              "image: 'valkey/valkey:9.1'}\n")  # fmt: skip
        eventually(
            lambda: cluster_status(cp, namespace).get("phase") == "Ready",
            "the cluster Ready, built by an operator logged in through the plugin",
            180,
        )

        def ready_in_status() -> bool:
            # The phase may move on and back between kubectl's read and this one's.
            return "Ready, 3/3 nodes healthy" in redkube_status(kubeconfig, "plugged")

        eventually(ready_in_status, "redkube status through the plugin: Ready, 3/3 healthy", 60)
        given = tokens(tmp_path)
        assert given and api_status(cp, given[-1]) == 200

        # Rotation: every token the plugin gave is revoked.
        revoked = [f"exec-token-{i + 1}" for i in range(len(given))]
        cp.kubectl("delete", "secrets", "-n", namespace, *revoked)
        eventually(lambda: api_status(cp, given[-1]) == 401, "the old token refused", 30)

        cp.kubectl(
            "patch", "rediscluster", "plugged", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"replicasPerShard": 1}}',
        )  # fmt: skip
        eventually(
            lambda: (
                cluster_status(cp, namespace).get("readyNodes") == "6/6"
                and cluster_status(cp, namespace).get("phase") == "Ready"
            ),
            "the replicas added by the operator after the rotation",
            240,
        )
        assert len(tokens(tmp_path)) > len(given), "the plugin ran again after the rotation"
        assert "Ready, 6/6 nodes healthy" in redkube_status(kubeconfig, "plugged")
        assert "system:anonymous" not in log.read_text()
    finally:
        stop_operator(operator)
        cp.kubectl("delete", "clusterrolebinding", binding, check=False)
