"""The operator, run as its own process against the test bed, with the CRD installed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed import ControlPlane
from tests.testbed.kube import eventually

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "crd.yaml"
BACKUP_CRD = ROOT / "deploy" / "backup-crd.yaml"
NAMESPACES = "op-*"
"""The operator serves these only (a kopf glob): other tests' RedisClusters stay untouched."""


LEASE_NAMESPACE = "default"
FAST_LEASE = ("--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5")
"""Short leader-election periods, so an operator started after a SIGKILLed one soon acts."""


def lease_for(namespaces: str) -> str:
    """Each namespace glob its own Lease (`op-*` -> `redkube-op`), so an operator never waits
    for one serving other namespaces."""
    return "redkube-" + re.sub(r"[^a-z0-9-]", "", namespaces.lower()).strip("-")


def start_operator(
    cp: ControlPlane,
    log: Path,
    namespaces: str,
    *args: str,
    lease: str | None = None,
    lease_namespace: str = LEASE_NAMESPACE,
) -> subprocess.Popen[bytes]:
    """`python -m redkube.operator` for the namespaces matching `namespaces` (a kopf glob), with
    leader election on the Lease `lease_namespace/lease` (default: `lease_for(namespaces)`) and
    `FAST_LEASE` periods; `args` are more flags, after those (so they win)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "redkube.operator", f"--kubeconfig={cp.kubeconfig}",
             f"--namespace={namespaces}", f"--leader-election-namespace={lease_namespace}",
             f"--leader-election-name={lease or lease_for(namespaces)}", *FAST_LEASE, *args],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metrics_url(log: Path) -> str:
    """Where the session's operator (the `operator` fixture, whose log this is) serves metrics."""
    return f"http://127.0.0.1:{(log.parent / 'metrics-port').read_text()}/metrics"


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Each sample at `url` (name, labels, value), read by prometheus_client's own parser."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def stop_operator(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal the operator (SIGTERM by default), then kill it if it has not exited in 30 s;
    returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def redkube_status(kubeconfig: Path, name: str, *flags: str) -> str:
    """`redkube status NAME --kubeconfig ...` as a user runs it (its own REDKUBE_HOME, so no
    local cluster of that name is found first); its output, after a zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "redkube", "status", name, "--kubeconfig", str(kubeconfig),
         *flags],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "REDKUBE_HOME": str(kubeconfig.parent / "redkube-home")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def install_crd(cp: ControlPlane) -> None:
    """Apply the CRDs and poll until they are Established (`kubectl wait` right after a first
    apply can fail at once: "<nil> is of the type <nil>" before the CRD has any condition)."""
    cp.kubectl("apply", "-f", str(CRD), "-f", str(BACKUP_CRD))

    def established() -> bool:
        done = cp.kubectl(
            "get", "crd", "redisclusters.redkube.io", "redisclusterbackups.redkube.io", "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Established')].status}",
            check=False,
        )  # fmt: skip
        return done.stdout.split() == ["True", "True"]

    eventually(established, "the CRDs are Established", 60)


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Yields the operator's log file; the operator is stopped (SIGTERM) afterwards. It serves
    its metrics on the port `metrics_url` reads beside that log."""
    install_crd(control_plane)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    port = free_port()
    (log.parent / "metrics-port").write_text(str(port))
    # Lease default/redkube-op, with the default periods: this operator is never killed, and a
    # busy 2-core machine must not cost it the Lease (it would exit, failing every later test).
    process = start_operator(
        control_plane, log, NAMESPACES, f"--metrics-port={port}", *DEFAULT_LEASE
    )
    SESSION_OPERATOR[log] = process
    try:
        yield log
    finally:
        SESSION_OPERATOR.pop(log, None)
        stop_operator(process)


DEFAULT_LEASE = ("--lease-duration=15", "--renew-deadline=10", "--retry-period=2")
SESSION_OPERATOR: dict[Path, subprocess.Popen[bytes]] = {}
"""The session's operator process, by its log."""


@pytest.fixture(autouse=True)
def session_operator_alive(request: pytest.FixtureRequest) -> None:
    """A test that uses the session's operator fails at once, with the reason, when that
    operator has exited (rather than waiting out every timeout for a reconcile that never
    comes)."""
    if "operator" not in request.fixturenames:
        return
    log = request.getfixturevalue("operator")
    process = SESSION_OPERATOR.get(log)
    if process is not None and (code := process.poll()) is not None:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_LINES_ON_FAILURE:])
        pytest.fail(f"the session's operator exited with {code}; its log ends:\n{tail}")


RESTARTABLE = "full-*"
"""Namespaces served by an operator a test starts, kills and starts again (`operator_process`),
not by the session's."""


class Operator:
    """The operator for `glob`, started and stopped (or SIGKILLed and started again) at will;
    every run appends to one log."""

    def __init__(self, cp: ControlPlane, log: Path, glob: str = RESTARTABLE) -> None:
        self.cp, self.log, self.glob = cp, log, glob
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = start_operator(self.cp, self.log, self.glob)

    def kill(self) -> None:
        assert self.process is not None
        stop_operator(self.process, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            stop_operator(self.process)

    def tail(self, lines: int = 60) -> str:
        """The log's last lines, titled, for a benchmark that failed."""
        if not self.log.exists():
            return "no operator log"
        said = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"operator log (last {lines} lines):\n" + "\n".join(said)


@pytest.fixture
def operator_process(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Operator]:
    install_crd(control_plane)
    operator = Operator(control_plane, tmp_path / "operator.log")
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


LOG_LINES_ON_FAILURE = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """When a test with a namespace fails, its report also shows what the operator logged for
    that namespace and the namespace's Pods and RedisClusters, so a failure in CI explains
    itself."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    namespace, log = funcargs.get("namespace"), funcargs.get("operator")
    cp = funcargs.get("control_plane")
    if not report.failed or call.when != "call" or not isinstance(namespace, str):
        return
    if not isinstance(log, Path):  # a test that starts its own operator logs to tmp_path
        log = funcargs.get("tmp_path", Path("/nonexistent")) / "operator.log"
    if log.exists():
        lines = [line for line in log.read_text(errors="replace").splitlines() if namespace in line]
        report.sections.append(
            (f"operator log for {namespace}", "\n".join(lines[-LOG_LINES_ON_FAILURE:]))
        )
    if isinstance(cp, ControlPlane):
        for kind in ("pods", "redisclusters"):
            shown = cp.kubectl("get", kind, "-n", namespace, "-o", "wide", check=False)
            report.sections.append((f"kubectl get {kind}", shown.stdout + shown.stderr))
        messages = cp.kubectl(
            "get", "redisclusters", "-n", namespace, "--no-headers",
            "-o", "custom-columns=NAME:.metadata.name,MESSAGE:.status.message", check=False,
        )  # fmt: skip
        report.sections.append(("RedisCluster status.message", messages.stdout))
        report.sections.append(("what each Pod's server says", _cluster_views(cp, namespace)))


CLUSTER_VIEW = (
    "cli=$(command -v redis-cli || command -v valkey-cli); "
    '"$cli" -h "$POD_IP" cluster info | head -7; "$cli" -h "$POD_IP" cluster nodes'
)


def _cluster_views(cp: ControlPlane, namespace: str) -> str:
    """CLUSTER INFO's head and CLUSTER NODES from every running Pod of the namespace."""
    listed = cp.kubectl(
        "get", "pods", "-n", namespace, "--field-selector=status.phase=Running",
        "-o", "jsonpath={.items[*].metadata.name}", check=False,
    )  # fmt: skip
    shown: list[str] = []
    for pod in listed.stdout.split():
        try:
            said = cp.kubectl(
                "exec", "-n", namespace, pod, "--", "sh", "-c", CLUSTER_VIEW, check=False,
                timeout=20,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            shown.append(f"--- {pod}: no answer within 20 s")
            continue
        shown.append(f"--- {pod}\n{said.stdout}{said.stderr}")
    return "\n".join(shown)
