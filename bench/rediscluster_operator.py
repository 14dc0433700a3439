"""The operator on the test bed: time from `kubectl apply` of a 3x1 RedisCluster to status Ready,
and the operator's memory (RSS) while it manages 10 clusters.

On real nodes (3 kubelets with containerd), with the operator as a process beside the control
plane. No other Redis operator's images can be had on this machine (no registry), so the figures
are printed as they are.
Run: python bench/rediscluster_operator.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository

from testbed import ControlPlane
from testbed.fabric import Fabric
from tests.testbed.fixtures import start_real_cluster

ROOT = Path(__file__).resolve().parents[1]
FABRIC, PODS = "10.252", "10.242"  # apart from the tests' and make testbed-up's

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: %(name)s, namespace: bench}
spec: {shards: %(shards)d, replicasPerShard: %(replicas)d, image: "valkey/valkey:9.1",
       storage: {size: 1Gi}}
"""


def phase(cp: ControlPlane, name: str) -> str:
    done = cp.kubectl("get", "rdc", "-n", "bench", name, "-o", "json", check=False)
    if done.returncode != 0:
        return ""
    return str((json.loads(done.stdout).get("status") or {}).get("phase", ""))


def apply_until_ready(cp: ControlPlane, name: str, shards: int, replicas: int) -> float:
    began = time.monotonic()
    manifest = CLUSTER % {"name": name, "shards": shards, "replicas": replicas}
    cp.kubectl("apply", "-f", "-", input=manifest)
    deadline = began + 300
    while phase(cp, name) != "Ready":
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} not Ready in 300 s")
        time.sleep(0.05)
    return time.monotonic() - began


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="redkube-bench-operator-"))
    cluster = start_real_cluster(workdir, Fabric(3, prefix=FABRIC, pods=PODS))
    cp = cluster.cp
    operator = None
    try:
        cp.kubectl("apply", "-f", str(ROOT / "deploy" / "crd.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "crd/redisclusters.redkube.io")
        cp.kubectl("create", "namespace", "bench")
        operator = subprocess.Popen(
            [sys.executable, "-m", "redkube.operator", f"--kubeconfig={cp.kubeconfig}",
             "--leader-election-namespace=default"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        idle = 0.0
        times = []
        for run in range(args.runs):
            if run == 0:
                time.sleep(3)  # let kopf start
                idle = rss_mib(operator.pid)
            seconds = apply_until_ready(cp, f"ready-{run}", 3, 1)
            times.append(seconds)
            cp.kubectl("delete", "rdc", "-n", "bench", f"ready-{run}", "--wait=true", timeout=180)
        median = statistics.median(times)
        print(
            f"kubectl apply -> status Ready, 3 shards x 1 replica (6 Pods): median {median:.1f}s "
            f"over {args.runs} ({', '.join(f'{t:.1f}' for t in times)})"
        )
        for index in range(args.clusters):
            apply_until_ready(cp, f"many-{index}", 3, 0)
        print(
            f"operator RSS: {idle:.0f} MiB idle, {rss_mib(operator.pid):.0f} MiB managing "
            f"{args.clusters} clusters of 3 shards (30 Pods)"
        )
    finally:
        if operator is not None:
            os.kill(operator.pid, signal.SIGTERM)
            operator.wait(timeout=60)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
