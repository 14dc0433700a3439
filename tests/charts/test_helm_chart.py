"""The Helm chart `charts/redkube`, checked by the real `helm` (built from the Go module proxy by
`charts/build-helm.sh`) and the test bed's real kube-apiserver: lint, what it renders (the same
RBAC, args, env and securityContext as `deploy/operator.yaml`, so the two install paths cannot
drift), values honoured, bad values refused by the schema, and a real install and uninstall."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed import ControlPlane
from tests.testbed.kube import JSON, get

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "redkube"
BUILD_SCRIPT = ROOT / "charts" / "build-helm.sh"
CRD = ROOT / "deploy" / "crd.yaml"
OPERATOR_YAML = ROOT / "deploy" / "operator.yaml"
RELEASE = "rk"
NAMESPACE = "redkube-system"
FULLNAME = f"{RELEASE}-redkube"
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@dataclass(frozen=True)
class Helm:
    """The helm CLI with its own config, cache and data dirs, and no kubeconfig unless given."""

    binary: Path
    home: Path

    def run(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
        for part in ("cache", "config", "data"):
            env[f"HELM_{part.upper()}_HOME"] = str(self.home / part)
        # Without a kubeconfig, point at a missing file: helm must never reach a real cluster.
        env["KUBECONFIG"] = str(kubeconfig or self.home / "no-kubeconfig")
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=timeout,
            check=False, env=env,
        )  # fmt: skip
        if check and done.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} exited with {done.returncode}:\n{done.stderr}")
        return done

    def template(self, *args: str, namespace: str = NAMESPACE) -> list[JSON]:
        """`helm template` of the chart: its objects, parsed."""
        done = self.run("template", RELEASE, str(CHART), f"--namespace={namespace}", *args)
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm from charts/build-helm.sh: instant when cached (CI builds it first), ~2 min cold."""
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin"}
    done = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False, env=env
    )
    if done.returncode == 2 and "Go toolchain not found" in done.stderr:
        pytest.skip(f"no helm in the cache and no Go to build it: {done.stderr.strip()}")
    if done.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    assert lines, f"{BUILD_SCRIPT} printed nothing"
    return Helm(Path(lines[-1]), tmp_path_factory.mktemp("helm-home"))


def by_kind(objects: Sequence[JSON]) -> dict[str, JSON]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), f"one object of each kind expected: {kinds}"
    return {o["kind"]: o for o in objects}


def container(deployment: JSON) -> JSON:
    containers: list[JSON] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def operator_yaml() -> dict[str, JSON]:
    return by_kind([doc for doc in yaml.safe_load_all(OPERATOR_YAML.read_text()) if doc])


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return f"--values={path}"


def test_the_charts_crd_is_deploy_crd_byte_for_byte() -> None:
    chart_crd = CHART / "crds" / "redisclusters.yaml"
    assert chart_crd.read_bytes() == CRD.read_bytes(), (
        "the chart's CRD differs from deploy/crd.yaml: "
        "cp deploy/crd.yaml charts/redkube/crds/redisclusters.yaml"
    )
    backup_crd = CHART / "crds" / "redisclusterbackups.yaml"
    assert backup_crd.read_bytes() == (ROOT / "deploy" / "backup-crd.yaml").read_bytes(), (
        "cp deploy/backup-crd.yaml charts/redkube/crds/redisclusterbackups.yaml"
    )


def test_the_charts_dashboard_is_deploys_byte_for_byte() -> None:
    chart = (CHART / "files" / "redkube-dashboard.json").read_bytes()
    assert chart == (ROOT / "deploy" / "redkube-dashboard.json").read_bytes()


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["type"]) == ("v2", "redkube", "application")
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


def test_helm_lint_strict_passes(helm: Helm) -> None:
    done = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout, done.stdout


def test_default_render_agrees_with_deploy_operator_yaml(helm: Helm) -> None:
    rendered = by_kind(helm.template())
    deploy = operator_yaml()
    assert set(rendered) == {
        "ServiceAccount", "Deployment", "PodDisruptionBudget", "NetworkPolicy", *RBAC_KINDS
    }  # fmt: skip
    assert set(deploy) - set(rendered) == {"Namespace"}  # helm install --create-namespace
    for obj in rendered.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["labels"]["helm.sh/chart"] == "redkube-0.1.0"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]

    # RBAC: the same rules, bound to the chart's ServiceAccount in the release namespace.
    assert rendered["ClusterRole"]["rules"] == deploy["ClusterRole"]["rules"]
    assert rendered["Role"]["rules"] == deploy["Role"]["rules"]
    account = rendered["ServiceAccount"]["metadata"]["name"]
    subject = {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        assert rendered[binding]["subjects"] == [subject]
        assert rendered[binding]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": role,
            "name": rendered[role]["metadata"]["name"],
        }  # fmt: skip

    # One instance through drains; only the probes in, only the API server, Redis and DNS out.
    assert rendered["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    for field in ("policyTypes", "ingress", "egress"):
        ours = rendered["NetworkPolicy"]["spec"][field]
        assert ours == deploy["NetworkPolicy"]["spec"][field], field

    # The Deployment: the same Pod and container, plus the Lease's namespace made explicit.
    ours, theirs = rendered["Deployment"]["spec"], deploy["Deployment"]["spec"]
    assert ours["replicas"] == theirs["replicas"] == 2
    assert ours["strategy"] == theirs["strategy"]
    assert ours["selector"]["matchLabels"].items() <= ours["template"]["metadata"]["labels"].items()
    pod, their_pod = ours["template"]["spec"], theirs["template"]["spec"]
    assert pod["serviceAccountName"] == account
    assert pod["securityContext"] == their_pod["securityContext"]
    mine, other = container(rendered["Deployment"]), container(deploy["Deployment"])
    for field in ("name", "image", "env", "resources", "securityContext", "ports"):
        assert mine[field] == other[field], field
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert mine[probe] == other[probe], probe
        assert mine[probe]["httpGet"] == {"path": path, "port": "health"}
    assert mine["ports"] == [
        {"name": "health", "containerPort": 8080}, {"name": "metrics", "containerPort": 9808}
    ]  # fmt: skip
    assert mine["args"][:5] == other["args"]
    assert other["args"] == [
        "python", "-m", "redkube.operator", "--health-port=8080", "--metrics-port=9808"
    ]  # fmt: skip
    assert mine["args"][5:] == [
        f"--leader-election-namespace={NAMESPACE}", "--lease-duration=15", "--renew-deadline=10",
        "--retry-period=2",
    ]  # fmt: skip
    assert mine["imagePullPolicy"] == "IfNotPresent"


def test_default_flags_configure_the_operator_like_deploy_operator_yaml(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart spells out the operator's defaults; both install paths mean the same."""
    from redkube.operator.__main__ import parse_args

    monkeypatch.setenv("POD_NAMESPACE", NAMESPACE)  # what the Pod's env gives the operator
    ours = container(by_kind(helm.template())["Deployment"])["args"]
    theirs = container(operator_yaml()["Deployment"])["args"]
    assert vars(parse_args(ours[3:])) == vars(parse_args(theirs[3:]))


@pytest.mark.parametrize(
    "values",
    [
        {"watchNamespaces": ["a", "b-*"]},
        {"leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5}},
        {"leaderElection": {"enabled": False}, "replicaCount": 1},
    ],
    ids=["namespaces", "timings", "no-election"],
)
def test_the_operator_accepts_the_flags_the_chart_passes(
    helm: Helm, tmp_path: Path, values: dict[str, Any]
) -> None:
    from redkube.operator.__main__ import parse_args

    args = container(by_kind(helm.template(values_file(tmp_path, values)))["Deployment"])["args"]
    parsed = parse_args(args[3:])
    assert parsed.namespace == values.get("watchNamespaces", [])
    election = {"enabled": True, "leaseDuration": 15, "renewDeadline": 10, "retryPeriod": 2}
    election.update(values.get("leaderElection", {}))
    assert parsed.leader_election is election["enabled"]
    if election["enabled"]:
        assert parsed.leader_election_namespace == NAMESPACE
        assert (parsed.lease_duration, parsed.renew_deadline, parsed.retry_period) == (
            election["leaseDuration"], election["renewDeadline"], election["retryPeriod"]
        )  # fmt: skip


def test_values_are_honoured(helm: Helm, tmp_path: Path) -> None:
    values = {
        "image": {"repository": "registry.example/redkube", "tag": "v9", "pullPolicy": "Always"},
        "replicaCount": 3,
        "watchNamespaces": ["team-a", "team-b-*"],
        "leaderElection": {"leaseDuration": 30, "renewDeadline": 20, "retryPeriod": 2.5},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"team": "storage"},
        "healthPort": 9090,
        "metricsPort": 0,
    }
    deployment = by_kind(helm.template(values_file(tmp_path, values)))["Deployment"]
    pod = deployment["spec"]["template"]
    ours = container(deployment)
    assert deployment["spec"]["replicas"] == 3
    assert ours["image"] == "registry.example/redkube:v9"
    assert ours["imagePullPolicy"] == "Always"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "v9"
    assert ours["args"] == [
        "python", "-m", "redkube.operator", "--health-port=9090", "--namespace=team-a",
        "--namespace=team-b-*", f"--leader-election-namespace={NAMESPACE}", "--lease-duration=30",
        "--renew-deadline=20", "--retry-period=2.5",
    ]  # fmt: skip
    # Values files merge into the defaults: the memory limit stays (`limits: null` drops it).
    assert ours["ports"] == [{"name": "health", "containerPort": 9090}]
    assert ours["resources"] == {**values["resources"], "limits": {"memory": "256Mi"}}
    for field in ("nodeSelector", "tolerations", "affinity"):
        assert pod["spec"][field] == values[field], field
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "storage"
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE

    # A single instance without leader election: no Lease flags, no Lease Role.
    single = by_kind(helm.template("--set=leaderElection.enabled=false", "--set=replicaCount=1"))
    assert container(single["Deployment"])["args"][5:] == ["--no-leader-election"]
    assert {"Role", "RoleBinding"}.isdisjoint(single)
    assert {"ClusterRole", "ClusterRoleBinding"} <= set(single)
    assert "PodDisruptionBudget" not in single  # minAvailable 1 of 1 would block every drain

    # No RBAC objects; the ServiceAccount is still the chart's.
    no_rbac = by_kind(helm.template("--set=rbac.create=false"))
    assert set(no_rbac) == {"ServiceAccount", "Deployment", "PodDisruptionBudget", "NetworkPolicy"}
    bare = by_kind(
        helm.template("--set=podDisruptionBudget.enabled=false,networkPolicy.enabled=false")
    )
    assert {"PodDisruptionBudget", "NetworkPolicy"}.isdisjoint(bare)

    # Someone else's ServiceAccount: not created, but used and bound.
    theirs = by_kind(helm.template("--set=serviceAccount.create=false,serviceAccount.name=ops"))
    assert "ServiceAccount" not in theirs
    assert theirs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert theirs["ClusterRoleBinding"]["subjects"][0]["name"] == "ops"

    # Object names follow the release; the namespace is the release's.
    named = by_kind(helm.template("--set=fullnameOverride=redkube-operator", namespace="ops-ns"))
    assert {o["metadata"]["name"] for o in named.values()} == {
        "redkube-operator", "redkube-operator-leader-election"
    }  # fmt: skip
    assert named["Deployment"]["metadata"]["namespace"] == "ops-ns"
    assert "--leader-election-namespace=ops-ns" in container(named["Deployment"])["args"]


def test_monitoring_objects_scrape_the_metrics_port_and_carry_the_alert_file(
    helm: Helm, tmp_path: Path
) -> None:
    """Off by default (they need the Prometheus Operator's CRDs); on, the PodMonitor scrapes the
    operator Pods' metrics port and the PrometheusRule holds files/redkube-alerts.yaml as is."""
    assert not {"PodMonitor", "PrometheusRule"} & {o["kind"] for o in helm.template()}
    values = {
        "monitoring": {
            "podMonitor": {"enabled": True, "interval": "15s"},
            "prometheusRule": {"enabled": True},
            "labels": {"release": "kube-prometheus"},
        }
    }
    rendered = by_kind(helm.template(values_file(tmp_path, values)))
    monitor, rule = rendered["PodMonitor"], rendered["PrometheusRule"]
    for obj in (monitor, rule):
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus"
    selector = rendered["Deployment"]["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert {"name": "metrics", "containerPort": 9808} in container(rendered["Deployment"])["ports"]
    alert_file = yaml.safe_load((CHART / "files" / "redkube-alerts.yaml").read_text())
    assert rule["spec"] == alert_file
    assert "ConfigMap" not in rendered
    with_dashboard = {"monitoring": {"grafanaDashboard": {"enabled": True}}}
    dashboard = by_kind(helm.template(values_file(tmp_path, with_dashboard)))["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    loaded = json.loads(dashboard["data"]["redkube-dashboard.json"])
    assert loaded == json.loads((CHART / "files" / "redkube-dashboard.json").read_text())
    # Without a metrics port there is nothing to scrape: no PodMonitor.
    off = {**values, "metricsPort": 0}
    assert "PodMonitor" not in {o["kind"] for o in helm.template(values_file(tmp_path, off))}


def test_the_nodes_podmonitor_scrapes_every_clusters_exporter_with_the_operators_labels(
    helm: Helm, tmp_path: Path
) -> None:
    """Off by default; on, it selects every RedisCluster Pod in any namespace on the sidecar's
    port, and labels the series as the operator labels its per-node ones."""
    assert "PodMonitor" not in {o["kind"] for o in helm.template()}
    values = {"monitoring": {"nodePodMonitor": {"enabled": True}, "labels": {"release": "kp"}}}
    (monitor,) = [
        o for o in helm.template(values_file(tmp_path, values)) if o["kind"] == "PodMonitor"
    ]
    assert monitor["metadata"]["name"].endswith("-nodes")
    assert monitor["metadata"]["labels"]["release"] == "kp"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["selector"] == {
        "matchExpressions": [{"key": "redkube.io/cluster", "operator": "Exists"}]
    }
    (endpoint,) = spec["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == (
        "metrics",
        "/metrics",
        "30s",
    )
    relabeled = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabeled["cluster"]["sourceLabels"] == [
        "__meta_kubernetes_namespace",
        "__meta_kubernetes_pod_label_redkube_io_cluster",
    ]
    assert relabeled["cluster"]["separator"] == "/"
    assert relabeled["node"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]
    assert relabeled["shard"]["sourceLabels"] == ["__meta_kubernetes_pod_label_redkube_io_shard"]


BAD_VALUES = [
    ("replicaCount=-1", "at '/replicaCount': minimum: got -1, want 0"),
    ("replicaCoutn=3", "additional properties 'replicaCoutn' not allowed"),
    ("image.tag=123", "at '/image/tag': got number, want string"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
    ("image.registry=x", "at '/image': additional properties 'registry' not allowed"),
    ("rbac.create=yes", "at '/rbac/create': got string, want boolean"),
    ("serviceAccount.nmae=x", "additional properties 'nmae' not allowed"),
    ("leaderElection.leaseDuration=-5", "at '/leaderElection/leaseDuration'"),
    ("resources.requests.cpu=lots", "at '/resources/requests/cpu'"),
    ("watchNamespaces=team-a", "at '/watchNamespaces': got string, want array"),
    ("watchNamespaces[0]=Team_A", "at '/watchNamespaces/0'"),
    ("podLabels.team=1", "at '/podLabels/team': got number, want string"),
    ("metricsPort=70000", "at '/metricsPort': maximum: got 70,000, want 65,535"),
    ("monitoring.podMonitor.interval=often", "at '/monitoring/podMonitor/interval'"),
    ("monitoring.nodePodMonitor.enabled=1", "at '/monitoring/nodePodMonitor/enabled'"),
]


@pytest.mark.parametrize(("value", "expected"), BAD_VALUES, ids=[v for v, _ in BAD_VALUES])
def test_the_values_schema_refuses_bad_values(helm: Helm, value: str, expected: str) -> None:
    done = helm.run("template", RELEASE, str(CHART), f"--set={value}", check=False)
    assert done.returncode != 0, done.stdout
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert expected in done.stderr, done.stderr


REFUSED_COMBINATIONS = [
    (
        ["leaderElection.enabled=false"],
        "leaderElection.enabled=false needs replicaCount 0 or 1: two operators without a Lease",
    ),
    (
        ["leaderElection.leaseDuration=10"],
        "leaderElection.renewDeadline (10) must be shorter than leaderElection.leaseDuration (10)",
    ),
    (
        ["leaderElection.retryPeriod=12"],
        "leaderElection.retryPeriod (12) must be shorter than leaderElection.renewDeadline (10)",
    ),
]


@pytest.mark.parametrize(
    ("values", "expected"), REFUSED_COMBINATIONS, ids=["two-without-lease", "renew", "retry"]
)
def test_combinations_the_operator_would_refuse_are_refused(
    helm: Helm, values: list[str], expected: str
) -> None:
    sets = [f"--set={v}" for v in values]
    done = helm.run("template", RELEASE, str(CHART), *sets, check=False)
    assert done.returncode != 0, done.stdout
    assert expected in done.stderr, done.stderr


def test_the_rendered_chart_passes_the_apiservers_validation(
    helm: Helm, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    plain = helm.run("template", RELEASE, str(CHART), f"--namespace={namespace}",
                     "--include-crds").stdout  # fmt: skip
    values = {
        "watchNamespaces": ["team-a"],
        "leaderElection": {"leaseDuration": 30, "renewDeadline": 20, "retryPeriod": 2},
        "serviceAccount": {"name": "other"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "redkube"}},
                    },
                }]
            }
        },
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"team": "storage"},
    }  # fmt: skip
    custom = helm.run("template", "other", str(CHART), f"--namespace={namespace}",
                      values_file(tmp_path, values)).stdout  # fmt: skip
    for rendered, count in ((plain, 10), (custom, 8)):  # with the two CRDs, then without
        done = control_plane.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=rendered
        )
        lines = done.stdout.strip().splitlines()
        assert len(lines) == count, done.stdout
        assert all("(server dry run)" in line for line in lines), done.stdout


def test_helm_install_then_uninstall(
    helm: Helm, control_plane: ControlPlane, namespace: str
) -> None:
    """A real install into the test namespace (the CRD is there already, so helm skips it). The
    operator's Pods cannot run here (no images on the test bed), so nothing waits for them."""
    cp = control_plane
    cp.kubectl("apply", "-f", str(CRD))
    kubeconfig, ns = cp.kubeconfig, f"--namespace={namespace}"
    done = helm.run("install", RELEASE, str(CHART), ns, kubeconfig=kubeconfig, timeout=180)
    try:
        assert "STATUS: deployed" in done.stdout, done.stdout
        assert "kubectl get rdc" in done.stdout, done.stdout  # NOTES.txt
        deployment = get(cp, namespace, "deployment", FULLNAME)
        assert deployment["spec"]["replicas"] == 2
        for kind in ("serviceaccount", "role", "rolebinding"):
            get(cp, namespace, kind, FULLNAME if kind == "serviceaccount" else
                f"{FULLNAME}-leader-election")  # fmt: skip
        for kind in ("clusterrole", "clusterrolebinding"):
            cp.kubectl("get", kind, FULLNAME)
        # The ServiceAccount may do what the operator needs, and no more.
        account = f"--as=system:serviceaccount:{namespace}:{FULLNAME}"
        for allowed, what in (
            ("yes", ("patch", "redisclusters.redkube.io", "-A")),
            ("yes", ("create", "statefulsets.apps", "-n", "default")),
            ("yes", ("update", "leases.coordination.k8s.io", "-n", namespace)),
            ("no", ("update", "leases.coordination.k8s.io", "-n", "default")),
            ("no", ("delete", "secrets", "-n", namespace)),
        ):
            answer = cp.kubectl("auth", "can-i", account, *what, check=False).stdout.strip()
            assert answer == allowed, (what, answer)
        listed = json.loads(helm.run("list", ns, "-o", "json", kubeconfig=kubeconfig).stdout)
        assert [(r["name"], r["status"]) for r in listed] == [(RELEASE, "deployed")]
    finally:
        helm.run("uninstall", RELEASE, ns, kubeconfig=kubeconfig, timeout=180)
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cp.kubectl("get", kind, FULLNAME, check=False).returncode != 0, kind
    assert cp.kubectl("get", "crd", "redisclusters.redkube.io").returncode == 0  # helm keeps CRDs
