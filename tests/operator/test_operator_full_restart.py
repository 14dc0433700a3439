"""Every Pod of a RedisCluster deleted at once, ten times in a row, under a writer whose writes
count once a replica has them (SET then WAIT 1): each time the cluster comes back Ready with six
new Pods (new uids, new IPs), `redis-cli --cluster check` is clean, every replica's link is up,
and at the end every acknowledged write reads back. While the Pods are down the status says so
(not Ready, fewer than 6/6 healthy). In round 5 the operator is SIGKILLed right after the
deletion too, and a new one started once the new Pods exist.

Timings and the failed client commands are printed, never asserted: a full restart is an outage.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from testbed import ControlPlane
from tests.acked_writers import AckedLog, AckedWriter
from tests.checks import assert_keys, redis_cli_check_at
from tests.operator.conftest import Operator
from tests.operator.test_kubectl_workflow import (
    CLUSTER,
    cluster_client,
    password,
    running_pods,
    status,
)
from tests.testbed.kube import JSON, apply, eventually, pods, redis_cli, rediscluster_messages

SELECTOR = "redkube.io/cluster=shop"
NAMES = sorted(f"shop-{shard}-{ordinal}" for shard in range(3) for ordinal in range(2))
ROUNDS = 10
KILL_ROUND = 5
READY_TIMEOUT_S = 180.0
UNREADY_TIMEOUT_S = 60.0
NEW_PODS_TIMEOUT_S = 120.0
POLL_S = 0.3
CONNECT_EVERY_S = 0.5
"""The writer looks the Pod IPs up (kubectl) at most this often while the cluster is down."""
WRITES_BETWEEN_ROUNDS = 200


@pytest.fixture
def operator(operator_process: Operator) -> Path:
    """Here the `operator` is this module's own (the session's serves `op-*`); its log is what
    tests/operator/conftest.py quotes in a failing test's report."""
    return operator_process.log


class Connector:
    """Builds a cluster client from the IPs the Ready Pods have now, as a client behind the
    Service would after every Pod got a new IP; looks them up at most every CONNECT_EVERY_S."""

    def __init__(self, cp: ControlPlane, namespace: str, pw: str) -> None:
        self.cp, self.namespace, self.pw = cp, namespace, pw
        self.last = 0.0

    def __call__(self) -> RedisCluster:
        pause = self.last + CONNECT_EVERY_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self.last = time.monotonic()
        try:
            ips = [p["status"]["podIP"] for p in running_pods(self.cp, self.namespace).values()]
        except Exception as error:  # kubectl failed or timed out: just another failed connect
            raise RedisClusterException(f"listing the Pods failed: {error}") from error
        if not ips:
            raise RedisClusterException("no Ready Pod")
        return RedisCluster(
            startup_nodes=[ClusterNode(ip, 6379) for ip in ips],
            password=self.pw,
            decode_responses=True,
            socket_timeout=2,
            socket_connect_timeout=1,
        )


def all_pods(cp: ControlPlane, namespace: str) -> dict[str, JSON]:
    return pods(cp, namespace, SELECTOR)


def healthy_count(found: JSON) -> int:
    ready = str(found.get("readyNodes") or "0/0")
    return int(ready.split("/")[0] or 0)


def honest_while_down(cp: ControlPlane, namespace: str) -> JSON | None:
    """The status, if it says the cluster is down: phase not Ready and fewer than 6/6 healthy."""
    found = status(cp, namespace)
    if found.get("phase") != "Ready" and healthy_count(found) < len(NAMES):
        return found
    return None


def all_new(listed: dict[str, JSON], old_uids: set[str]) -> bool:
    """All six Pods are listed, none with an old uid."""
    uids = {p["metadata"]["uid"] for p in listed.values()}
    return sorted(listed) == NAMES and not uids & old_uids


def back_ready(cp: ControlPlane, namespace: str, old_uids: set[str]) -> bool:
    """Ready 6/6 in the status, and every Pod a new one (uid), Running and Ready."""
    found = status(cp, namespace)
    if found.get("phase") != "Ready" or found.get("readyNodes") != f"{len(NAMES)}/{len(NAMES)}":
        return False
    return all_new(running_pods(cp, namespace), old_uids)


def new_pods_exist(cp: ControlPlane, namespace: str, old_uids: set[str]) -> bool:
    return all_new(all_pods(cp, namespace), old_uids)


@dataclass
class Round:
    number: int
    seconds: float
    down_status: JSON | None  # what the status said while the Pods were down (None: not looked)


def servers(listed: dict[str, JSON], pw: str) -> str:
    """What each Pod's server says: its role, its master's address and link (INFO replication),
    cluster_state, and the CLUSTER NODES of any node that is not a linked member of a working
    cluster."""
    lines: list[str] = []
    for name, pod in sorted(listed.items()):
        ip = pod["status"].get("podIP")
        if not ip:
            lines.append(f"{name}: no IP")
            continue
        info = redis_cli(ip, pw, "info", "replication")
        fields = {k: v.strip() for k, v in (x.split(":", 1) for x in info.splitlines() if ":" in x)}
        state = redis_cli(ip, pw, "cluster", "info").splitlines()[:1]
        said = f"{name} {ip}: role {fields.get('role', '?')}, {state[0] if state else 'no answer'}"
        if fields.get("role") == "slave":
            said += (
                f", master {fields.get('master_host')}:{fields.get('master_port')} link "
                f"{fields.get('master_link_status')}, sync in progress "
                f"{fields.get('master_sync_in_progress')}"
            )
        lines.append(said)
        if "cluster_state:ok" not in state or fields.get("master_link_status", "up") != "up":
            lines.append(
                "  CLUSTER NODES: "
                + redis_cli(ip, pw, "cluster", "nodes").replace("\n", "\n                 ")
            )
    return "\n".join(lines)


def explain(
    cp: ControlPlane, namespace: str, number: int, error: AssertionError, pw: str
) -> AssertionError:
    found = status(cp, namespace)
    listed = all_pods(cp, namespace)
    shown = ", ".join(
        f"{name} {p['status'].get('phase')} uid {p['metadata']['uid'][:8]}"
        f"{' terminating' if p['metadata'].get('deletionTimestamp') else ''}"
        for name, p in sorted(listed.items())
    )
    return AssertionError(
        f"round {number}: {error}\nphase {found.get('phase')!r}, readyNodes "
        f"{found.get('readyNodes')!r}, message: {found.get('message')!r}\n"
        f"problems: {found.get('problems')!r}\nPods: {shown}\n{servers(listed, pw)}"
    )


def restart_every_pod(
    cp: ControlPlane, namespace: str, pw: str, number: int, operator: Operator | None = None
) -> Round:
    """Delete every Pod at once; with `operator`, SIGKILL it right after and start a new one
    once the new Pods exist. Returns the seconds from the deletion to Ready 6/6 on new Pods."""
    old_uids = {p["metadata"]["uid"] for p in all_pods(cp, namespace).values()}
    assert len(old_uids) == len(NAMES), old_uids
    began = time.monotonic()
    cp.kubectl("delete", "pod", "-n", namespace, "-l", SELECTOR, "--wait=false")
    down: JSON | None = None
    try:
        if operator is not None:
            operator.kill()
            eventually(
                lambda: new_pods_exist(cp, namespace, old_uids),
                "six new Pods exist (with the operator down)",
                NEW_PODS_TIMEOUT_S,
                POLL_S,
            )
            operator.start()
        else:
            down = eventually(
                lambda: honest_while_down(cp, namespace),
                "the status says the cluster is down (phase not Ready, readyNodes below 6/6)",
                UNREADY_TIMEOUT_S,
                POLL_S,
            )
        phases: set[str] = set()

        def ready_noting_phases() -> bool:
            phases.add(str(status(cp, namespace).get("phase")))
            return back_ready(cp, namespace, old_uids)

        eventually(
            ready_noting_phases,
            "Ready 6/6 with six new Pods Running",
            READY_TIMEOUT_S - (time.monotonic() - began),
            POLL_S,
        )
        # The phase comes from what is observed, not from a new operator's memory: a cluster
        # holding data is Healing, never Bootstrapping.
        assert "Bootstrapping" not in phases, f"phases seen: {sorted(phases)}"
    except AssertionError as error:
        raise explain(cp, namespace, number, error, pw) from None
    return Round(number, time.monotonic() - began, down)


def assert_whole(cp: ControlPlane, namespace: str, pw: str) -> None:
    """`redis-cli --cluster check` is clean; 3 masters, 3 replicas, every replica linked."""
    listed = running_pods(cp, namespace)
    redis_cli_check_at(next(iter(listed.values()))["status"]["podIP"], pw)
    roles: dict[str, str] = {}
    for name, pod in listed.items():
        info = redis_cli(pod["status"]["podIP"], pw, "info", "replication")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        roles[name] = fields.get("role", "?").strip()
        if roles[name] == "slave":
            assert fields.get("master_link_status", "").strip() == "up", (name, info)
    assert sorted(roles.values()) == ["master"] * 3 + ["slave"] * 3, roles


def wait_for_writes(writer: AckedWriter, count: int) -> None:
    eventually(
        lambda: len(writer.log.acknowledged) >= count, f"{count} acknowledged writes", 60, 0.1
    )


def summary(rounds: list[Round], log: AckedLog) -> str:
    times = [r.seconds for r in rounds] or [0.0]
    lines = [
        f"round {r.number}: Ready {r.seconds:.1f}s after the deletion"
        + (" (operator SIGKILLed and restarted)" if r.down_status is None else "")
        + (
            f"; while down: phase {r.down_status.get('phase')}, "
            f"readyNodes {r.down_status.get('readyNodes')}"
            if r.down_status is not None
            else ""
        )
        for r in rounds
    ]
    lines.append(
        f"{len(rounds)} rounds to Ready: median {statistics.median(times):.1f}s, "
        f"max {max(times):.1f}s"
    )
    lines.append(
        f"writes: {len(log.acknowledged)} acknowledged, {log.failed_commands} failed commands, "
        f"{log.unacknowledged} not acknowledged by a replica, {log.failed_connects} failed "
        "connects"
    )
    return "\n".join(lines)


@pytest.mark.timeout(900)  # ten full restarts, about 2-4 min unloaded
@pytest.mark.namespace_prefix("full")
@pytest.mark.parametrize("image", ["redis:7.0", "valkey/valkey:9.1"])
def test_every_pod_deleted_at_once_ten_times_under_writes(
    control_plane: ControlPlane,
    operator: Path,
    operator_process: Operator,
    namespace: str,
    image: str,
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"image": image})
    eventually(lambda: back_ready(cp, namespace, set()), "the RedisCluster is Ready 6/6", 180)
    pw = password(cp, namespace)
    writer = AckedWriter(Connector(cp, namespace, pw), "acked", max_seconds=3600)
    writer.start()
    rounds: list[Round] = []
    checked: dict[str, str] = {}
    try:
        wait_for_writes(writer, WRITES_BETWEEN_ROUNDS)
        for number in range(1, ROUNDS + 1):
            killed = operator_process if number == KILL_ROUND else None
            rounds.append(restart_every_pod(cp, namespace, pw, number, killed))
            print(f"\nround {number}: Ready {rounds[-1].seconds:.1f}s after the deletion")
            assert_whole(cp, namespace, pw)
            acknowledged = writer.log.snapshot()
            with cluster_client(cp, namespace, pw) as client:
                assert_keys(client, {k: v for k, v in acknowledged.items() if k not in checked})
            checked = acknowledged
            wait_for_writes(writer, len(acknowledged) + WRITES_BETWEEN_ROUNDS)
    finally:
        log = writer.stop()
        print("\n" + summary(rounds, log))
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, log.acknowledged)
    # The kubelet and the StatefulSet controller start Pods: the loop waits for them, it does not
    # post a "start" action on every pass while they come back.
    assert not rediscluster_messages(cp, namespace, "start "), rediscluster_messages(cp, namespace)
