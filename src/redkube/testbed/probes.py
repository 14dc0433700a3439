"""Readiness, liveness and startup probes: exec, tcpSocket and httpGet, with the kubelet's
timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds, success/failureThreshold)."""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from redkube.testbed.apiclient import JSON
from redkube.testbed.sandboxes import enter_argv


def _port(value: object, container: JSON) -> int:
    if isinstance(value, int):
        return value
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    return int(str(value))


def run_probe(
    probe: JSON, container: JSON, pid: int, pod_ip: str, env: Mapping[str, str]
) -> tuple[bool, str]:
    """One attempt: (succeeded, a short message for events and logs)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "exec" in probe:
            done = subprocess.run(
                enter_argv(pid, probe["exec"]["command"]),
                env=dict(env),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            output = (done.stdout + done.stderr).decode(errors="replace").strip()[:200]
            return done.returncode == 0, output
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = spec.get("host") or pod_ip
            with socket.create_connection((host, _port(spec["port"], container)), timeout):
                return True, ""
        if "httpGet" in probe:
            spec = probe["httpGet"]
            conn = http.client.HTTPConnection(
                spec.get("host") or pod_ip, _port(spec["port"], container), timeout=timeout
            )
            try:
                conn.request("GET", spec.get("path", "/"))
                status = conn.getresponse().status
            finally:
                conn.close()
            return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    except OSError as error:
        return False, str(error)
    return False, f"unsupported probe handler {sorted(probe)}"


@dataclass
class ProbeTracker:
    """When a probe is due, and its verdict from consecutive results."""

    probe: JSON
    started_at: float
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    passing: bool = False
    """Readiness and startup begin failing (not ready / not started); liveness begins passing."""

    def __post_init__(self) -> None:
        self.next_at = self.started_at + float(self.probe.get("initialDelaySeconds", 0))

    @property
    def failed(self) -> bool:
        return self.failures >= int(self.probe.get("failureThreshold", 3))

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> bool:
        """Count one result; returns the verdict after it."""
        self.next_at = now + float(self.probe.get("periodSeconds", 10))
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.passing = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failed:
                self.passing = False
        return self.passing
