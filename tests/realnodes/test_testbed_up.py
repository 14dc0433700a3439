"""`python -m testbed up` (what `make testbed-up` runs) as a person uses it: the
kubeconfig it prints works with plain kubectl on this machine, for `kubectl exec -it` with a TTY,
`kubectl logs` and `kubectl port-forward`; `down` leaves no process, network namespace, route or
iptables rule behind. (Its own cluster, beside the session's, on other addresses.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.__main__ import REAL_FABRIC, REAL_PODS
from tests.realnodes.test_teardown import machine_state
from tests.testbed.fixtures import IMAGES, ROOT, built, missing
from tests.testbed.kube import eventually, is_ready

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: kv}
spec:
  securityContext: {runAsUser: 999, runAsGroup: 999, fsGroup: 999}
  containers:
  - {name: kv, image: "valkey/valkey:9.1", imagePullPolicy: Never,
     args: ["--protected-mode", "no"]}
"""


def run_testbed(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args, f"--workdir={workdir}"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def fabric_namespaces(prefix: str) -> set[str]:
    """The namespaces of the fabric whose nodes have addresses in `prefix` (others' test beds
    may come and go meanwhile): those sharing the `rk<token>-` of a namespace with one."""
    tokens = set()
    for name in namespaces():
        addresses = subprocess.run(["ip", "-n", name, "-4", "addr"], capture_output=True,
                                   text=True, check=False).stdout  # fmt: skip
        if f"inet {prefix}." in addresses:
            tokens.add(name.split("-", 1)[0])
    return {name for name in namespaces() if name.split("-", 1)[0] in tokens}


def ours(state: tuple[str, str]) -> tuple[str, list[str]]:
    """The machine's iptables rules, and its routes to our addresses."""
    rules, routes = state
    return rules, [r for r in routes.splitlines() if REAL_FABRIC in r or REAL_PODS in r]


@pytest.mark.timeout(600)
def test_testbed_up_real_gives_a_kubeconfig_for_exec_tty_logs_and_port_forward(
    tmp_path: Path,
) -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)
    bindir, node_bins = built("build-binaries.sh"), built("build-node-binaries.sh")
    before = ours(machine_state())
    assert fabric_namespaces(REAL_FABRIC) == set(), "a test bed runs already"
    workdir = tmp_path / "testbed"
    parts = (f"--bindir={bindir}", f"--node-bindir={node_bins}", f"--images={IMAGES}")
    assert run_testbed("status", workdir=workdir).returncode == 3
    up = run_testbed("up", *parts, workdir=workdir)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert run_testbed("status", workdir=workdir).returncode == 0
        again = run_testbed("up", *parts, workdir=workdir)
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout
        found = re.search(r"^export KUBECONFIG=(\S+)$", up.stdout, re.M)
        assert found, up.stdout
        assert "kubectl exec -it" in up.stdout and "port-forward" in up.stdout, up.stdout
        created = fabric_namespaces(REAL_FABRIC)
        assert len(created) == 4, created  # the bridge's and 3 nodes'
        env = {**os.environ, "KUBECONFIG": found.group(1)}
        kubectl = str(bindir / "kubectl")

        def run(*args: str, input: str | None = None) -> str:
            done = subprocess.run([kubectl, *args], env=env, input=input, capture_output=True,
                                  text=True, timeout=60, check=False)  # fmt: skip
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
            return done.stdout

        nodes = json.loads(run("get", "nodes", "-o", "json"))["items"]
        assert len(nodes) == 3 and all(is_ready(node) for node in nodes), nodes
        run("apply", "-f", "-", input=POD)
        eventually(
            lambda: is_ready(json.loads(run("get", "pod", "kv", "-o", "json"))), "kv Ready", 120
        )

        # exec -it: kubectl asks for a TTY, which `script` gives it.
        tty = subprocess.run(
            ["script", "-qec", f"{kubectl} exec -it kv -- redis-cli ping", "/dev/null"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert tty.returncode == 0 and "PONG" in tty.stdout, tty.stdout + tty.stderr
        assert "Ready to accept connections" in run("logs", "kv")

        forward = subprocess.Popen(
            [kubectl, "port-forward", "pod/kv", ":6379"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert forward.stdout is not None
            line = forward.stdout.readline()  # Forwarding from 127.0.0.1:NNNNN -> 6379
            port = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert port, line
            ping = subprocess.run(["redis-cli", "-p", port.group(1), "ping"], capture_output=True,
                                  text=True, timeout=30, check=False)  # fmt: skip
            assert ping.stdout.strip() == "PONG", ping
        finally:
            forward.terminate()
            forward.wait(timeout=30)
    finally:
        down = run_testbed("down", workdir=workdir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "test bed stopped" in down.stdout
    assert run_testbed("status", workdir=workdir).returncode == 3
    assert created & namespaces() == set()
    assert ours(machine_state()) == before
    leftover = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True,
                              check=False)  # fmt: skip
    assert leftover.stdout == "", leftover.stdout
