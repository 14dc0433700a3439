"""Leader election on the test bed: two operators share one Lease; only its holder acts, a
SIGKILLed leader's standby takes over once the Lease expires, a SIGTERMed leader releases it, a
leader whose Lease is taken (or cannot be renewed) stops and exits 1, and a missing Lease
namespace is one clear line."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from redkube.kubernetes.leasing import new_lease, observe
from redkube.platform.kubernetes.api import KubernetesApi, KubernetesError
from redkube.platform.kubernetes.leases import LeaderElector
from testbed import ControlPlane
from tests.operator.conftest import (
    LEASE_NAMESPACE,
    install_crd,
    start_operator,
    stop_operator,
)
from tests.testbed.kube import JSON, apply, eventually, get

GLOB = "lead-*"
CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: %s}
spec: {shards: 3, replicasPerShard: 0, image: "valkey/valkey:9.1"}
"""


def identity(process: subprocess.Popen[bytes]) -> str:
    """The operator's Lease identity outside a Pod: `<hostname>-<pid>`."""
    return f"{socket.gethostname()}-{process.pid}"


def lease_spec(cp: ControlPlane, name: str) -> JSON:
    found = cp.kubectl("get", "lease", "-n", LEASE_NAMESPACE, name, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    spec: JSON = json.loads(found.stdout).get("spec") or {}
    return spec


def holder(cp: ControlPlane, name: str) -> str:
    return str(lease_spec(cp, name).get("holderIdentity") or "")


def phase(cp: ControlPlane, namespace: str, name: str) -> str:
    return str((get(cp, namespace, "rediscluster", name).get("status") or {}).get("phase", ""))


class Pair:
    """Two operators on one Lease, each with its own log; `leader`/`standby` once decided."""

    def __init__(self, cp: ControlPlane, tmp_path: Path, lease: str) -> None:
        self.cp, self.lease = cp, lease
        self.logs = {key: tmp_path / f"operator-{key}.log" for key in "ab"}
        self.processes = {
            key: start_operator(cp, log, GLOB, lease=lease) for key, log in self.logs.items()
        }

    def log(self, process: subprocess.Popen[bytes]) -> str:
        key = next(k for k, p in self.processes.items() if p is process)
        return self.logs[key].read_text(errors="replace")

    def elect(self) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """(leader, standby), once the Lease names one of the two."""
        ids = {identity(p): p for p in self.processes.values()}

        def known_holder() -> str:
            name = holder(self.cp, self.lease)
            return name if name in ids else ""

        leader = ids[eventually(known_holder, "one of the two operators holds the Lease", 60)]
        standby = next(p for p in self.processes.values() if p is not leader)
        return leader, standby

    def stop(self) -> None:
        for process in self.processes.values():
            stop_operator(process)


@pytest.mark.namespace_prefix("lead")
def test_only_the_leader_acts_and_a_standby_takes_over_from_a_killed_one(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    install_crd(cp)
    pair = Pair(cp, tmp_path, "lead-kill")
    try:
        leader, standby = pair.elect()
        eventually(
            lambda: f"waiting for leadership (held by {identity(leader)})" in pair.log(standby),
            "the standby logs that it waits for the leader",
        )
        apply(cp, namespace, CLUSTER % "first")
        eventually(lambda: phase(cp, namespace, "first") == "Ready", "the leader bootstraps", 180)
        assert "became leader" in pair.log(leader)
        assert "first-0-0" in pair.log(leader)  # the loop names the Pods it acts on
        assert "became leader" not in pair.log(standby)
        assert "first-0-0" not in pair.log(standby)
        assert leader.poll() is None and standby.poll() is None
        before = lease_spec(cp, "lead-kill")

        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=30)
        eventually(
            lambda: holder(cp, "lead-kill") == identity(standby),
            "the standby takes the Lease once it expires",
            60,
        )
        after = lease_spec(cp, "lead-kill")
        assert after["leaseTransitions"] > before["leaseTransitions"]
        eventually(lambda: "became leader" in pair.log(standby), "the standby logs it leads")

        apply(cp, namespace, CLUSTER % "second")
        eventually(
            lambda: phase(cp, namespace, "second") == "Ready", "the new leader bootstraps", 180
        )
        assert "second-0-0" in pair.log(standby)
        assert standby.poll() is None
    finally:
        pair.stop()


def watch_lease(cp: ControlPlane, name: str, out: Path) -> subprocess.Popen[bytes]:
    """`kubectl get lease --watch -o json`: every version of the Lease, written to `out`."""
    with out.open("wb") as sink:
        return subprocess.Popen(
            [str(cp.bindir / "kubectl"), f"--kubeconfig={cp.kubeconfig}", "get", "lease",
             "-n", LEASE_NAMESPACE, name, "--watch", "-o", "json"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def versions(path: Path) -> list[JSON]:
    """The JSON objects kubectl's watch printed one after another."""
    text, found, decoder, at = path.read_text(), [], json.JSONDecoder(), 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found
        try:
            obj, at = decoder.raw_decode(text, at)
        except ValueError:  # a version still being written
            return found
        found.append(obj)


def test_a_sigtermed_leader_releases_the_lease_to_its_standby(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    install_crd(cp)
    pair = Pair(cp, tmp_path, "lead-term")
    watch = None
    try:
        leader, standby = pair.elect()
        before = lease_spec(cp, "lead-term")
        history = tmp_path / "lease-versions.json"
        watch = watch_lease(cp, "lead-term", history)
        eventually(lambda: versions(history), "the watch prints the Lease")

        assert stop_operator(leader, signal.SIGTERM) == 0
        assert "released lease" in pair.log(leader)

        def until_the_standby_holds() -> list[JSON]:
            specs = [v.get("spec") or {} for v in versions(history)]
            held = any(s.get("holderIdentity") == identity(standby) for s in specs)
            return specs if held else []

        seen = eventually(until_the_standby_holds, "the standby takes the released Lease", 60)
        holders = [spec.get("holderIdentity", "") for spec in seen]
        released = holders.index("")  # the old leader cleared the holder ...
        assert holders[released - 1] == identity(leader)
        assert seen[released]["leaseDurationSeconds"] == 1  # ... as client-go's ReleaseOnCancel
        assert set(holders[released + 1 :]) == {identity(standby)}
        taken = lease_spec(cp, "lead-term")
        assert taken["leaseTransitions"] == before["leaseTransitions"] + 1
        assert "it was released" in pair.log(standby)
    finally:
        if watch is not None:
            watch.kill()
            watch.wait()
        pair.stop()


def test_a_missing_lease_namespace_is_one_clear_line(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redkube.operator", f"--kubeconfig={control_plane.kubeconfig}",
         f"--namespace={GLOB}", "--leader-election-namespace=lead-nowhere"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [
        "python -m redkube.operator: error: the leader-election namespace 'lead-nowhere' does "
        "not exist: create it, or pass --leader-election-namespace"
    ], done.stderr


@pytest.mark.namespace_prefix("lead")
def test_a_leader_whose_lease_is_taken_stops_and_exits_non_zero(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    install_crd(cp)
    log = tmp_path / "operator.log"
    process = start_operator(cp, log, GLOB, lease="lead-lost")
    try:
        eventually(lambda: holder(cp, "lead-lost") == identity(process), "it takes the Lease", 60)
        apply(cp, namespace, CLUSTER % "busy")  # so that kopf has a daemon to stop
        eventually(lambda: "busy-0-0" in log.read_text(), "the operator acts on it", 60)
        cp.kubectl(
            "patch", "lease", "-n", LEASE_NAMESPACE, "lead-lost", "--type=merge",
            "-p", '{"spec": {"holderIdentity": "an-intruder"}}',
        )  # fmt: skip
        eventually(lambda: process.poll() is not None, "the operator exits", 60)
        assert process.returncode == 1
        text = log.read_text()
        assert "lost leadership: lease default/lead-lost is now held by an-intruder" in text
        assert "released lease" not in text  # it is not ours to release
        assert holder(cp, "lead-lost") == "an-intruder"
    finally:
        stop_operator(process)


class UnreachableApi:
    """A KubernetesApi whose every call fails as a dropped connection would."""

    async def get(self, path: str) -> JSON:
        raise KubernetesError(0, "ConnectionFailed", "connection refused")

    async def replace(self, path: str, body: JSON) -> JSON:
        raise KubernetesError(0, "ConnectionFailed", "connection refused")


def test_a_leader_that_cannot_renew_within_the_deadline_is_told_it_lost() -> None:
    """No test bed: the renewer alone, against an API that stopped answering."""
    elector = LeaderElector(
        cast(KubernetesApi, UnreachableApi()), "ns", "lease", "me",
        lease_duration=0.4, renew_deadline=0.3, retry_period=0.05,
    )  # fmt: skip
    elector.observed = observe(None, new_lease("ns", "lease", "me", 1, datetime.now(UTC)), 0.0)

    async def renew_until_lost() -> bool:
        lost = asyncio.Event()
        await asyncio.wait_for(elector.hold(lost), timeout=30)
        return lost.is_set()

    assert asyncio.run(renew_until_lost())
    assert elector.is_leader  # what it last saw; it just could not renew it
