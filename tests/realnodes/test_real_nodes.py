"""The test bed's real nodes do what GKE's or EKS's would for redkube's Pods: the images run
under a hardened securityContext that is enforced, Pods get addresses on their node's subnet and
reach each other across nodes, claims get volumes that outlive the Pod, kubectl exec and logs
work through the kubelets."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from testbed.realcluster import RealCluster
from tests.testbed.fixtures import NODES
from tests.testbed.kube import container_status, events, eventually, is_ready

JSON = dict[str, Any]

HARDENED = """\
  securityContext:
    runAsUser: 999
    runAsGroup: 999
    runAsNonRoot: true
    fsGroup: 999
    seccompProfile: {type: RuntimeDefault}
"""
CONTAINER_HARDENED = """\
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"""


def kubectl(cluster: RealCluster, *args: str, input: str | None = None) -> str:
    done = cluster.cp.kubectl(*args, input=input, check=False, timeout=90)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def wait_for(what: str, check: Any, timeout: float = 120) -> Any:
    return eventually(check, what, timeout, interval=0.5)


def ready_pod(cluster: RealCluster, namespace: str, name: str) -> JSON | None:
    done = cluster.cp.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if done.returncode != 0:
        return None
    pod: JSON = json.loads(done.stdout)
    return pod if is_ready(pod) else None


def pod_json(cluster: RealCluster, namespace: str, name: str) -> JSON:
    done = cluster.cp.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    found: JSON = json.loads(done.stdout) if done.returncode == 0 else {}
    return found


class Rollout:
    """Watches kv's rolling update by repeated looks: the look at which each ordinal's Pod was
    first seen on the update revision."""

    def __init__(self, cluster: RealCluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.looks = 0
        self.first_seen: dict[int, int] = {}

    def order(self) -> list[int] | None:
        """None while the rollout runs; then the ordinals in the order they were updated (Pods
        first seen updated in one look are put highest ordinal first: their order was not
        seen)."""
        self.looks += 1
        statefulset = json.loads(kubectl(self.cluster, "get", "statefulset", "kv", "-n",
                                         self.namespace, "-o", "json"))  # fmt: skip
        target = (statefulset.get("status") or {}).get("updateRevision")
        pods = json.loads(kubectl(self.cluster, "get", "pods", "-n", self.namespace, "-l",
                                  "app=kv", "-o", "json"))["items"]  # fmt: skip
        for pod in pods:
            if pod["metadata"]["labels"].get("controller-revision-hash") == target:
                ordinal = int(pod["metadata"]["name"].rsplit("-", 1)[1])
                self.first_seen.setdefault(ordinal, self.looks)
        if not (len(pods) == 3 and len(self.first_seen) == 3 and all(map(is_ready, pods))):
            return None
        return sorted(self.first_seen, key=lambda o: (self.first_seen[o], -o))


def test_three_real_nodes_with_zones_and_containerd(real_cluster: RealCluster) -> None:
    nodes = json.loads(kubectl(real_cluster, "get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == NODES
    for node in nodes:
        info = node["status"]["nodeInfo"]
        assert info["containerRuntimeVersion"] == "containerd://2.4.2", info
        assert info["kubeletVersion"] == "v1.36.3"
        assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] in (
            "zone-a", "zone-b", "zone-c",
        )  # fmt: skip
    print(f"real nodes Ready in {real_cluster.started_in:.1f}s (control plane included)")


@pytest.mark.parametrize("image", ["redis:7.0", "valkey/valkey:9.0", "valkey/valkey:9.1"])
def test_a_hardened_server_pod_is_enforced_and_reachable(
    real_cluster: RealCluster, namespace: str, image: str
) -> None:
    manifest = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: server}}
spec:
{HARDENED}  containers:
  - name: server
    image: {image}
    imagePullPolicy: IfNotPresent
    args: ["--protected-mode", "no", "--save", ""]
{CONTAINER_HARDENED}"""
    kubectl(real_cluster, "apply", "-n", namespace, "-f", "-", input=manifest)
    pod = wait_for("the server Pod Ready", lambda: ready_pod(real_cluster, namespace, "server"))
    ip = pod["status"]["podIP"]
    node = int(pod["spec"]["nodeName"].rsplit("-", 1)[1])
    subnet = real_cluster.fabric.pod_subnet(node)
    assert ip.startswith(subnet.rsplit(".", 1)[0] + "."), (ip, subnet)
    said = kubectl(
        real_cluster, "exec", "-n", namespace, "server", "--", "sh", "-c",
        "redis-cli ping; id -u; grep CapEff /proc/1/status; touch /x 2>&1; echo $?",
    )  # fmt: skip
    lines = said.split("\n")
    assert lines[0] == "PONG" and lines[1] == "999", said
    assert lines[2].split() == ["CapEff:", "0000000000000000"], said
    assert "Read-only file system" in said, said
    # From the machine, through the route the test bed set up to the node's Pod subnet.
    reply = subprocess.run(
        ["redis-cli", "-h", ip, "ping"], capture_output=True, text=True, timeout=10, check=False
    )
    assert reply.stdout.strip() == "PONG", reply
    logs = kubectl(real_cluster, "logs", "-n", namespace, "server")
    assert "Ready to accept connections" in logs, logs[-500:]


STATEFULSET = """\
apiVersion: v1
kind: Service
metadata: {name: kv}
spec:
  clusterIP: None
  selector: {app: kv}
  ports: [{port: 6379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kv}
spec:
  serviceName: kv
  replicas: 3
  selector: {matchLabels: {app: kv}}
  template:
    metadata: {labels: {app: kv}}
    spec:
      securityContext: {runAsUser: 999, runAsGroup: 999, runAsNonRoot: true, fsGroup: 999}
      terminationGracePeriodSeconds: 20
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: kv}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: kv
        image: valkey/valkey:9.1
        imagePullPolicy: IfNotPresent
        args: ["--protected-mode", "no", "--appendonly", "yes"]
        volumeMounts: [{name: data, mountPath: /data}]
        lifecycle:
          preStop: {exec: {command: ["sh", "-c", "echo ran >> /data/prestop"]}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
"""


def test_a_statefulset_spreads_keeps_its_data_and_its_pods_reach_each_other(
    real_cluster: RealCluster, namespace: str
) -> None:
    kubectl(real_cluster, "apply", "-n", namespace, "-f", "-", input=STATEFULSET)
    pods = [
        wait_for(f"kv-{i} Ready", lambda i=i: ready_pod(real_cluster, namespace, f"kv-{i}"), 180)
        for i in range(3)
    ]
    assert len({p["spec"]["nodeName"] for p in pods}) == 3, "one per node (anti-affinity)"
    ips = [p["status"]["podIP"] for p in pods]
    # Across nodes, Pod to Pod, by IP and by the headless Service's per-Pod names (CoreDNS).
    for other in ips[1:]:
        said = kubectl(real_cluster, "exec", "-n", namespace, "kv-0", "--", "redis-cli", "-h",
                       other, "ping")  # fmt: skip
        assert said.strip() == "PONG"
    said = kubectl(real_cluster, "exec", "-n", namespace, "kv-0", "--", "sh", "-c",
                   "redis-cli set kept yes && touch /data/written && stat -c %g /data")  # fmt: skip
    assert said.split() == ["OK", "999"], said  # fsGroup: the claim is the group's, writable
    before = pods[0]["metadata"]["uid"]
    kubectl(real_cluster, "delete", "pod", "-n", namespace, "kv-0")
    again = wait_for(
        "kv-0 back",
        lambda: (p := ready_pod(real_cluster, namespace, "kv-0")) and
        p["metadata"]["uid"] != before and p,
        180,
    )  # fmt: skip
    assert again["spec"]["nodeName"] == pods[0]["spec"]["nodeName"], "its volume's node"
    said = kubectl(real_cluster, "exec", "-n", namespace, "kv-0", "--", "redis-cli", "get", "kept")
    assert said.strip() == "yes"
    said = kubectl(real_cluster, "exec", "-n", namespace, "kv-0", "--", "cat", "/data/prestop")
    assert said.split() == ["ran"], said  # the preStop hook ran once, before the stop

    # A 4th replica has no node left that required anti-affinity allows: Pending, Unschedulable.
    kubectl(real_cluster, "scale", "statefulset", "kv", "-n", namespace, "--replicas=4")
    unschedulable = wait_for(
        "kv-3 Pending as Unschedulable",
        lambda: any(
            c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
            for c in (pod_json(real_cluster, namespace, "kv-3").get("status") or {}).get(
                "conditions", []
            )
        ),
        60,
    )
    assert unschedulable
    assert pod_json(real_cluster, namespace, "kv-3")["status"]["phase"] == "Pending"
    kubectl(real_cluster, "scale", "statefulset", "kv", "-n", namespace, "--replicas=3")

    # A rolling update replaces the Pods one at a time, highest ordinal first.
    kubectl(real_cluster, "patch", "statefulset", "kv", "-n", namespace, "--type=merge", "-p",
            '{"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}')  # fmt: skip
    rollout = Rollout(real_cluster, namespace)
    order = wait_for("the rolling update", rollout.order, 300)
    assert order == sorted(order, reverse=True), f"updated in the order {order}"


def test_dns_names_and_cluster_ips_resolve_and_route(
    real_cluster: RealCluster, namespace: str
) -> None:
    """CoreDNS answers for the headless Service's per-Pod names and for a Service, whose
    ClusterIP kube-proxy routes to a Pod on another node."""
    manifest = """\
apiVersion: v1
kind: Pod
metadata: {name: named, labels: {app: named}}
spec:
  hostname: named
  subdomain: names
  containers:
  - {name: kv, image: "valkey/valkey:9.1", imagePullPolicy: IfNotPresent,
     args: ["--protected-mode", "no"]}
---
apiVersion: v1
kind: Service
metadata: {name: names}
spec:
  clusterIP: None
  selector: {app: named}
  ports: [{port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  selector: {app: named}
  ports: [{port: 6379}]
"""
    kubectl(real_cluster, "apply", "-n", namespace, "-f", "-", input=manifest)
    pod = wait_for("the named Pod Ready", lambda: ready_pod(real_cluster, namespace, "named"))
    client = """\
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: named}}
        topologyKey: kubernetes.io/hostname
  containers:
  - {name: sh, image: "busybox:1.36", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
"""
    kubectl(real_cluster, "apply", "-n", namespace, "-f", "-", input=client)
    wait_for("the client Pod Ready", lambda: ready_pod(real_cluster, namespace, "client"))
    name = f"named.names.{namespace}.svc.cluster.local"
    said = wait_for(
        f"{name} resolved",
        lambda: (
            done := real_cluster.cp.kubectl(
                "exec", "-n", namespace, "client", "--", "nslookup", name, check=False
            )
        ).returncode == 0 and done.stdout,
        60,
    )  # fmt: skip
    assert pod["status"]["podIP"] in said, said
    service = json.loads(kubectl(real_cluster, "get", "service", "front", "-n", namespace,
                                 "-o", "json"))  # fmt: skip
    cluster_ip = service["spec"]["clusterIP"]
    said = kubectl(
        real_cluster, "exec", "-n", namespace, "client", "--", "sh", "-c",
        f"nslookup front.{namespace}.svc.cluster.local; "
        f"printf 'PING\\r\\n' | nc -w 2 {cluster_ip} 6379",
    )  # fmt: skip
    assert cluster_ip in said and "+PONG" in said, said


FAILING = """\
apiVersion: v1
kind: Pod
metadata: {name: missing-image}
spec:
  containers:
  - {name: c, image: "registry.invalid/redkube/none:1", imagePullPolicy: IfNotPresent}
---
apiVersion: v1
kind: Pod
metadata: {name: crashing}
spec:
  containers:
  - {name: c, image: "busybox:1.36", imagePullPolicy: IfNotPresent,
     command: ["sh", "-c", "echo going down; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: unready}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "600"]
    readinessProbe: {exec: {command: ["false"]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "600"]
    livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}
"""


def test_pull_failures_crash_loops_and_probes_as_a_kubelet_reports_them(
    real_cluster: RealCluster, namespace: str
) -> None:
    """Nothing is pulled here, so an image not imported fails to pull; a crashing command backs
    off; a failing readiness probe keeps a running Pod unready; a failing liveness probe restarts
    its container."""
    kubectl(real_cluster, "apply", "-n", namespace, "-f", "-", input=FAILING)

    def waiting_reason(name: str) -> str:
        state = container_status(pod_json(real_cluster, namespace, name)).get("state") or {}
        return str((state.get("waiting") or {}).get("reason", ""))

    wait_for("missing-image ImagePullBackOff",
             lambda: waiting_reason("missing-image") == "ImagePullBackOff", 120)  # fmt: skip
    pulled = [e.get("reason") for e in events(real_cluster.cp, namespace, "missing-image")]
    assert "Failed" in pulled and "BackOff" in pulled, pulled
    wait_for("crashing CrashLoopBackOff",
             lambda: waiting_reason("crashing") == "CrashLoopBackOff", 120)  # fmt: skip
    crashed = container_status(pod_json(real_cluster, namespace, "crashing"))
    assert crashed["lastState"]["terminated"]["exitCode"] == 3, crashed
    assert "going down" in kubectl(real_cluster, "logs", "-n", namespace, "crashing", "--previous")
    wait_for(
        "unhealthy restarted by its liveness probe",
        lambda: (
            container_status(pod_json(real_cluster, namespace, "unhealthy")).get("restartCount", 0)
            >= 1
        ),
        120,
    )
    unready = wait_for(
        "unready running",
        lambda: (
            (p := pod_json(real_cluster, namespace, "unready"))
            and container_status(p).get("state", {}).get("running")
            and p
        ),
    )
    assert not is_ready(unready)
    assert container_status(unready).get("restartCount") == 0
