"""Pods run on the test bed's nodes as real server processes, the way a kubelet runs them."""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from pathlib import Path

from redkube.testbed import ControlPlane
from tests.testbed.kube import (
    JSON,
    apply,
    container_status,
    events,
    eventually,
    get,
    is_ready,
    pods,
    redis_cli,
)

PASSWORD = "s3cret-pw"

REDIS = """\
apiVersion: v1
kind: Secret
metadata: {name: redis-auth}
stringData: {password: %(password)s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: redis-conf}
data:
  redis.conf: |
    dir /data
    appendonly yes
    appendfsync always
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  clusterIP: None
  selector: {app: redis}
  ports: [{port: 6379, name: redis}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis}
spec:
  serviceName: redis
  replicas: 3
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: redis
        image: %(image)s
        command: [redis-server, /etc/redis/redis.conf]
        args: [--bind, $(POD_IP), --requirepass, $(PASSWORD)]
        env:
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: redis-auth, key: password}}
        - name: REDISCLI_AUTH
          valueFrom: {secretKeyRef: {name: redis-auth, key: password}}
        ports: [{containerPort: 6379, name: redis}]
        readinessProbe:
          exec: {command: [sh, -c, 'redis-cli -h "$POD_IP" ping | grep -q PONG']}
          periodSeconds: 1
        livenessProbe:
          tcpSocket: {port: redis}
          periodSeconds: 2
        volumeMounts:
        - {name: conf, mountPath: /etc/redis}
        - {name: data, mountPath: /data}
      volumes:
      - name: conf
        configMap: {name: redis-conf}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"""


def redis_statefulset(image: str = "redis:7.0") -> str:
    return REDIS % {"password": PASSWORD, "image": image}


def rollout(cp: ControlPlane, namespace: str, what: str = "statefulset/redis") -> None:
    cp.kubectl("rollout", "status", "-n", namespace, what, "--timeout=120s", timeout=150)


def test_redis_statefulset_becomes_three_ready_pods_that_answer(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, redis_statefulset())
    rollout(control_plane, namespace)

    running = pods(control_plane, namespace, "app=redis")
    assert sorted(running) == ["redis-0", "redis-1", "redis-2"]
    ips = {p["status"]["podIP"] for p in running.values()}
    assert len(ips) == 3
    for pod in running.values():
        assert pod["status"]["phase"] == "Running"
        assert is_ready(pod)
        assert pod["status"]["podIP"].startswith("127.")
        assert redis_cli(pod["status"]["podIP"], PASSWORD, "ping") == "PONG"
        assert redis_cli(pod["status"]["podIP"], "wrong", "ping") != "PONG"
    claims = get(control_plane, namespace, "pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == [f"data-redis-{i}" for i in range(3)]
    assert all(c["status"]["phase"] == "Bound" for c in claims)


def test_deleted_pod_is_recreated_with_its_claim_and_data(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, redis_statefulset())
    rollout(control_plane, namespace)
    before = pods(control_plane, namespace)["redis-1"]
    assert redis_cli(before["status"]["podIP"], PASSWORD, "set", "kept", "value-1") == "OK"

    control_plane.kubectl("delete", "pod", "-n", namespace, "redis-1", timeout=90)

    def replaced() -> bool:
        pod = pods(control_plane, namespace).get("redis-1")
        return (
            pod is not None
            and pod["metadata"]["uid"] != before["metadata"]["uid"]
            and is_ready(pod)
        )

    eventually(replaced, "redis-1 is recreated and Ready")
    after = pods(control_plane, namespace)["redis-1"]
    claim = next(v for v in after["spec"]["volumes"] if v["name"] == "data")
    assert claim["persistentVolumeClaim"]["claimName"] == "data-redis-1"
    assert redis_cli(after["status"]["podIP"], PASSWORD, "get", "kept") == "value-1"


ANTI_AFFINITY = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: spread}
spec:
  serviceName: spread
  replicas: 4
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: spread}}
            topologyKey: kubernetes.io/hostname
      containers:
      - {name: pause, image: registry.k8s.io/pause:3.10}
"""


def test_required_anti_affinity_spreads_three_pods_and_leaves_a_fourth_pending(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, ANTI_AFFINITY)

    def three_running_one_pending() -> bool:
        phases = sorted(
            p["status"].get("phase", "") for p in pods(control_plane, namespace).values()
        )
        return phases == ["Pending", "Running", "Running", "Running"]

    eventually(three_running_one_pending, "3 Pods Running and 1 Pending")
    listed = pods(control_plane, namespace).values()
    nodes = [p["spec"]["nodeName"] for p in listed if p["status"]["phase"] == "Running"]
    assert sorted(nodes) == ["node-1", "node-2", "node-3"]
    pending = next(p for p in listed if p["status"]["phase"] == "Pending")
    scheduled = next(c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["reason"] == "Unschedulable"
    assert "anti-affinity" in scheduled["message"]


def test_rolling_update_replaces_pods_in_reverse_ordinal_order_waiting_for_ready(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, redis_statefulset())
    rollout(control_plane, namespace)
    old = {n: p["metadata"]["uid"] for n, p in pods(control_plane, namespace, "app=redis").items()}

    # Watch the Pods while the update runs: when each old Pod is deleted, which Pods are
    # already replaced, and are they Ready?
    seen: list[tuple[str, dict[str, tuple[str, bool]]]] = []
    stop = threading.Event()

    def observe() -> None:
        deadline = time.monotonic() + 180
        while not stop.is_set() and time.monotonic() < deadline:
            now = pods(control_plane, namespace, "app=redis")
            snapshot = {n: (p["metadata"]["uid"], is_ready(p)) for n, p in now.items()}
            if not seen or seen[-1][1] != snapshot:
                seen.append((time.strftime("%T"), snapshot))
            time.sleep(0.1)

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    patch = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a}
             for a in ("--maxmemory", "100mb")]  # fmt: skip
    control_plane.kubectl(
        "patch", "statefulset", "redis", "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )
    rollout(control_plane, namespace)
    stop.set()
    watcher.join()

    order: list[str] = []
    for _, snapshot in seen:
        for name, (uid, _) in snapshot.items():
            if uid != old[name] and name not in order:
                order.append(name)
    assert order == ["redis-2", "redis-1", "redis-0"], seen
    for _, snapshot in seen:
        replaced_or_gone = [n for n in old if snapshot.get(n, ("", False))[0] != old[n]]
        # At most one Pod is ever away from (old, or new and Ready): one at a time.
        not_serving = [n for n in replaced_or_gone if not snapshot.get(n, ("", False))[1]]
        assert len(not_serving) <= 1, seen
    for pod in pods(control_plane, namespace, "app=redis").values():
        assert "--maxmemory" in pod["spec"]["containers"][0]["args"]
        assert redis_cli(pod["status"]["podIP"], PASSWORD, "config", "get", "maxmemory").split()[
            -1
        ] == str(100 * 1024 * 1024)


BAD_PODS = """\
apiVersion: v1
kind: Pod
metadata: {name: no-image}
spec:
  containers: [{name: c, image: "nginx:1.27"}]
---
apiVersion: v1
kind: Pod
metadata: {name: crashing}
spec:
  containers: [{name: c, image: busybox, command: [sh, -c, "echo about to fail; exit 3"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-command}
spec:
  containers: [{name: c, image: busybox, command: [no-such-binary]}]
---
apiVersion: v1
kind: Pod
metadata: {name: healthy}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""


def test_bad_image_and_crashing_command_show_kubelet_states(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, BAD_PODS)

    def waiting(name: str) -> JSON:
        pod = pods(control_plane, namespace).get(name) or {}
        state: JSON = container_status(pod).get("state", {}).get("waiting", {})
        return state

    eventually(
        lambda: waiting("no-image").get("reason") in ("ErrImagePull", "ImagePullBackOff"),
        "no-image waits with an image pull error",
    )
    assert "no local mapping" in waiting("no-image")["message"]
    eventually(lambda: waiting("no-image").get("reason") == "ImagePullBackOff", "ImagePullBackOff")

    eventually(lambda: waiting("crashing").get("reason") == "CrashLoopBackOff", "crash loop")
    crashing = container_status(pods(control_plane, namespace)["crashing"])
    assert crashing["lastState"]["terminated"]["exitCode"] == 3
    assert "back-off" in crashing["state"]["waiting"]["message"]
    eventually(
        lambda: container_status(pods(control_plane, namespace)["crashing"])["restartCount"] >= 1,
        "the crashing container is restarted after its back-off",
    )

    eventually(lambda: waiting("no-command").get("reason") == "CrashLoopBackOff", "crash loop")
    no_command = container_status(pods(control_plane, namespace)["no-command"])
    terminated = no_command["lastState"]["terminated"]
    assert terminated["reason"] == "StartError"
    assert "no-such-binary" in terminated["message"]

    eventually(lambda: is_ready(pods(control_plane, namespace)["healthy"]), "others still run")
    reasons = {e["reason"] for e in events(control_plane, namespace, "crashing")}
    assert {"Started", "BackOff"} <= reasons


LIFECYCLE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, mode: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: lifecycle, labels: {tier: test}}
spec:
  terminationGracePeriodSeconds: 3
  initContainers:
  - {name: first, image: busybox, command: [sh, -c, "echo first >> /work/order"],
     volumeMounts: [{name: work, mountPath: /work}]}
  - {name: second, image: busybox, command: [sh, -c, "echo second >> /work/order"],
     volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - name: main
    image: busybox
    command: [sh, -c]
    args:
    - |
      trap '' TERM
      echo "$GREETING from $(hostname) at $MY_IP in $NS, mode $(cat /etc/settings/mode)"
      cat /work/order
      touch /tmp/alive
      while true; do sleep 0.2; done
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    readinessProbe:
      exec: {command: [test, -f, /tmp/alive]}
      periodSeconds: 1
    lifecycle:
      preStop:
        exec: {command: [sh, -c, "echo stopping > /out/prestop"]}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: settings, mountPath: /etc/settings, readOnly: true}
    - {name: out, mountPath: /out}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: settings, configMap: {name: settings}}
  - {name: out, hostPath: {path: %(out)s}}
"""


def test_init_containers_env_volumes_probe_prestop_and_grace_period(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    apply(control_plane, namespace, LIFECYCLE % {"out": out})
    eventually(lambda: is_ready(pods(control_plane, namespace)["lifecycle"]), "Ready")
    pod = pods(control_plane, namespace)["lifecycle"]
    inits = pod["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    log = control_plane.kubectl("logs", "-n", namespace, "lifecycle", "-c", "main").stdout
    ip = pod["status"]["podIP"]
    assert f"hello from lifecycle at {ip} in {namespace}, mode fast" in log
    assert "first\nsecond" in log

    # The container ignores SIGTERM: the preStop hook runs, then SIGKILL after the grace period.
    control_plane.kubectl("delete", "pod", "-n", namespace, "lifecycle", timeout=60)
    assert (out / "prestop").read_text().strip() == "stopping"
    assert "lifecycle" not in pods(control_plane, namespace)


LIVENESS = """\
apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: [test, -f, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
"""


def test_failing_liveness_probe_restarts_the_container(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, LIVENESS)
    eventually(
        lambda: (
            container_status(pods(control_plane, namespace)["liveness"]).get("restartCount", 0) >= 1
        ),
        "the container is restarted after its liveness probe fails",
    )
    reasons = {e["reason"] for e in events(control_plane, namespace, "liveness")}
    assert {"Unhealthy", "Killing"} <= reasons


def _read_until(fd: int, wanted: bytes, transcript: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in transcript:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} not seen in {bytes(transcript)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                transcript += os.read(fd, 4096)
            except OSError:  # the terminal closed
                break
    assert wanted in transcript, bytes(transcript)


def test_kubectl_logs_and_exec_reach_the_pods_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    apply(control_plane, namespace, redis_statefulset())
    rollout(control_plane, namespace)
    ip = pods(control_plane, namespace)["redis-0"]["status"]["podIP"]

    log = control_plane.kubectl("logs", "-n", namespace, "redis-0").stdout
    assert "Ready to accept connections" in log

    done = control_plane.kubectl(
        "exec", "-n", namespace, "redis-0", "--",
        "redis-cli", "-h", ip, "-a", PASSWORD, "--no-auth-warning", "ping",
    )  # fmt: skip
    assert done.stdout.strip() == "PONG"
    # The container's environment: the password comes from the Secret, REDISCLI_AUTH included.
    done = control_plane.kubectl(
        "exec", "-n", namespace, "redis-0", "--", "sh", "-c", 'redis-cli -h "$POD_IP" dbsize'
    )
    assert done.stdout.strip() == "0"

    master, slave = os.openpty()
    try:
        kubectl = subprocess.Popen(
            [str(control_plane.bindir / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}",
             "exec", "-it", "-n", namespace, "redis-1", "--", "sh"],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(slave)
    transcript = bytearray()
    try:
        os.write(master, b'redis-cli -h "$POD_IP" set via-tty ok-$((40+2))\r')
        _read_until(master, b"OK", transcript)
        os.write(master, b'redis-cli -h "$POD_IP" get via-tty; hostname\r')
        _read_until(master, b"ok-42", transcript)
        _read_until(master, b"redis-1", transcript)
        os.write(master, b"exit\r")
        assert kubectl.wait(timeout=30) == 0, bytes(transcript)
    finally:
        kubectl.kill()
        kubectl.wait()
        os.close(master)
