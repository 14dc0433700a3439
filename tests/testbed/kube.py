"""Small helpers for tests that drive the test bed with kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from testbed import ControlPlane

JSON = dict[str, Any]
T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = 90, interval: float = 0.3) -> T:
    """Poll `check` (bounded) until it returns something truthy, and return that; fail naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(interval)


def apply(cp: ControlPlane, namespace: str, manifest: str) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def get(cp: ControlPlane, namespace: str, *what: str) -> JSON:
    reply: JSON = json.loads(cp.kubectl("get", "-n", namespace, *what, "-o", "json").stdout)
    return reply


def pods(cp: ControlPlane, namespace: str, selector: str = "") -> dict[str, JSON]:
    args = ("pods", "-l", selector) if selector else ("pods",)
    return {p["metadata"]["name"]: p for p in get(cp, namespace, *args)["items"]}


def is_ready(pod: JSON) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def container_status(pod: JSON, index: int = 0) -> JSON:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    status: JSON = statuses[index]
    return status


def events(cp: ControlPlane, namespace: str, name: str) -> list[JSON]:
    reply = get(cp, namespace, "events", f"--field-selector=involvedObject.name={name}")
    items: list[JSON] = reply["items"]
    return items


def rediscluster_messages(cp: ControlPlane, namespace: str, prefix: str = "") -> list[str]:
    """The messages of the Events on RedisClusters in the namespace (the operator's actions),
    each as often as Kubernetes counted it, those starting with ``prefix``."""
    reply = get(cp, namespace, "events", "--field-selector=involvedObject.kind=RedisCluster")
    return [
        event["message"]
        for event in reply["items"]
        if event["message"].startswith(prefix)
        for _ in range(int(event.get("count") or 1))
    ]


def redis_cli(ip: str, password: str, *command: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", ip, "-a", password, "--no-auth-warning", *command],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.strip()
