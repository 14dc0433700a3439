"""A rolling version change (Valkey 9.0 -> 9.1) of a 3 shards x 1 replica cluster on the test
bed's real nodes, under load, rolled two ways in one run:

- redkube: `spec.image` changed on the RedisCluster; the operator restarts replicas first and
  each master only after a graceful CLUSTER FAILOVER to its in-sync replica;
- the reference: the same Pods rolled by a plain StatefulSet `RollingUpdate` without failover
  (what several Helm charts and operators do): the operator is stopped, each StatefulSet gets
  `updateStrategy: RollingUpdate`, the new image and no preStop hand-over, one StatefulSet after
  the other, as one StatefulSet of all six Pods would roll: highest ordinal first, each Pod once
  the one before is Ready;
  Redis' own failover (after cluster-node-timeout) promotes a replica when its master's Pod goes.

Per way: client commands that failed (redis-py's RedisCluster: SET a key, GET an earlier one),
the longest time between two successful SETs, acknowledged writes (SET then WAIT 1 on one
connection) lost, and the time the roll took. Target for redkube: 0 failed commands and a
longest gap under 100 ms. The same traffic also runs through a second client that gives up a
connect after 0.25 s (the first waits up to its 5 s socket timeout): a client that refreshes its
view of the cluster tries the addresses it knew, and a restarted Pod's old IP never answers.

Run: python bench/rolling.py
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.*

from redis.cluster import ClusterNode, RedisCluster

from testbed import ControlPlane
from testbed.fabric import Fabric
from tests.acked_writers import AckedLog, AckedWriter
from tests.datasets import Traffic, TrafficLog
from tests.operator.conftest import Operator, install_crd
from tests.operator.test_kubectl_workflow import cluster_client, password, running_pods
from tests.operator.test_operator_full_restart import Connector
from tests.operator.test_operator_rolling import manifest, rolled, versions
from tests.testbed.fixtures import start_real_cluster
from tests.testbed.kube import JSON, apply, eventually, get, redis_cli

FABRIC, PODS = "10.252", "10.242"  # the benchmarks': apart from the tests' and make testbed-up's
SHARDS = 3
BEFORE, AFTER = "valkey/valkey:9.0", "valkey/valkey:9.1"
ROLL_TIMEOUT_S = 600
FAST_CONNECT_S = 0.25
SETTLE_S = 3.0
"""Load kept on after the roll, so a late failure still counts."""


@dataclass
class Outcome:
    how: str
    seconds: float
    traffic: TrafficLog
    # The same traffic from a client that gives up connecting after FAST_CONNECT_S.
    fast_connect: TrafficLog
    acked: AckedLog
    lost: int

    def row(self) -> str:
        commands = self.traffic.writes + self.traffic.reads
        fast = self.fast_connect.writes + self.fast_connect.reads
        acked = len(self.acked.acknowledged)
        return (
            f"| {self.how} | {len(self.traffic.failed)} of {commands} | "
            f"{self.traffic.longest_gap_s * 1000:.0f} ms | {len(self.fast_connect.failed)} of "
            f"{fast} | {self.fast_connect.longest_gap_s * 1000:.0f} ms | {self.lost} of {acked} | "
            f"{self.acked.failed_commands} | {self.seconds:.1f} s |"
        )


def cluster_ok_everywhere(cp: ControlPlane, namespace: str, pw: str) -> bool:
    listed = running_pods(cp, namespace)
    if len(listed) != SHARDS * 2:
        return False
    for pod in listed.values():
        info = redis_cli(pod["status"]["podIP"], pw, "cluster", "info")
        if "cluster_state:ok" not in info:
            return False
    return True


def statefulset_rolled(cp: ControlPlane, namespace: str, shard: int) -> bool:
    found: JSON = get(cp, namespace, "statefulset", f"shop-{shard}").get("status") or {}
    return bool(
        found.get("updatedReplicas") == 2
        and found.get("readyReplicas") == 2
        and found.get("currentRevision") == found.get("updateRevision")
    )


def plain_rolling_update(cp: ControlPlane, namespace: str, pw: str) -> None:
    """The shards' StatefulSets rolled by Kubernetes alone, one after another (as one
    StatefulSet of all the Pods would roll: one Pod at a time, each once the one before is
    Ready): RollingUpdate, the new image, no preStop hand-over."""
    patch = json.dumps([
        {"op": "replace", "path": "/spec/updateStrategy", "value": {"type": "RollingUpdate"}},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": AFTER},
        {"op": "remove", "path": "/spec/template/spec/containers/0/lifecycle"},
    ])  # fmt: skip
    for shard in reversed(range(SHARDS)):
        cp.kubectl(
            "patch", "statefulset", f"shop-{shard}", "-n", namespace, "--type=json", "-p", patch
        )  # fmt: skip
        eventually(
            functools.partial(statefulset_rolled, cp, namespace, shard),
            f"shop-{shard}'s Pods rolled by the StatefulSet",
            ROLL_TIMEOUT_S,
        )
    eventually(
        lambda: cluster_ok_everywhere(cp, namespace, pw),
        "cluster_state:ok on every Pod",
        ROLL_TIMEOUT_S,
    )


def roll(
    cp: ControlPlane, namespace: str, operator: Operator, how: str, by_redkube: bool
) -> Outcome:
    apply(cp, namespace, manifest(BEFORE))
    eventually(lambda: rolled(cp, namespace), f"{namespace}: Ready on {BEFORE}", 300)
    pw = password(cp, namespace)
    if not by_redkube:
        operator.stop()  # the reference is Kubernetes alone
    traffic = Traffic(cluster_client(cp, namespace, pw), "traffic", max_seconds=ROLL_TIMEOUT_S + 60)
    ips = [ClusterNode(p["status"]["podIP"], 6379) for p in running_pods(cp, namespace).values()]
    fast_client = RedisCluster(
        startup_nodes=ips, password=pw, decode_responses=True, socket_timeout=5,
        socket_connect_timeout=FAST_CONNECT_S,
    )  # fmt: skip
    fast = Traffic(fast_client, "fast", max_seconds=ROLL_TIMEOUT_S + 60)
    fast.start()
    acked = AckedWriter(Connector(cp, namespace, pw), "acked", max_seconds=ROLL_TIMEOUT_S + 60)
    traffic.start()
    acked.start()
    try:
        time.sleep(SETTLE_S)
        began = time.monotonic()
        if by_redkube:
            apply(cp, namespace, manifest(AFTER))  # rolled() waits for its generation too
            eventually(lambda: rolled(cp, namespace), "every Pod rolled by redkube", ROLL_TIMEOUT_S)
        else:
            plain_rolling_update(cp, namespace, pw)
        seconds = time.monotonic() - began
        time.sleep(SETTLE_S)
    finally:
        traffic_log, acked_log, fast_log = traffic.stop(), acked.stop(), fast.stop()
        fast_client.close()
    ended = time.strftime("%H:%M:%S", time.gmtime(traffic_log.longest_gap_ended))
    print(f"{how}: the longest gap ended at {ended} UTC", file=sys.stderr)
    events = cp.kubectl(
        "get", "events", "-n", namespace, "--sort-by=.lastTimestamp",
        "-o", "custom-columns=AT:.lastTimestamp,OBJECT:.involvedObject.name,MESSAGE:.message",
    )  # fmt: skip
    print(events.stdout, file=sys.stderr)
    assert versions(cp, namespace, pw) == {"9.1.2"}, versions(cp, namespace, pw)
    with cluster_client(cp, namespace, pw) as client:
        lost = acked_log.lost_in(client)
    return Outcome(how, seconds, traffic_log, fast_log, acked_log, lost)


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    # A SIGTERM (timeout, kill) ends through the finally below: the cluster and its network
    # namespaces go with the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="redkube-bench-rolling-"))
    cluster = start_real_cluster(workdir, Fabric(3, prefix=FABRIC, pods=PODS))
    cp = cluster.cp
    operator = Operator(cp, workdir / "operator.log", "roll-*")
    outcomes: list[Outcome] = []
    try:
        install_crd(cp)
        for namespace, how, by_redkube in (
            ("roll-redkube", "redkube (failover first)", True),
            ("roll-plain", "StatefulSet RollingUpdate", False),
        ):
            cp.kubectl("create", "namespace", namespace)
            operator.start()
            outcomes.append(roll(cp, namespace, operator, how, by_redkube))
            operator.stop()
            print(outcomes[-1].row(), file=sys.stderr)
        print(f"rolling {BEFORE} -> {AFTER}, {SHARDS} shards x 1 replica, real nodes, under load")
        print("| rolled by | failed client commands | longest write gap | failed, client with "
              f"{FAST_CONNECT_S:g} s connect timeout | its longest gap | acked writes lost "
              "| acked writer's failed commands | roll |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for outcome in outcomes:
            print(outcome.row())
        ours, theirs = outcomes
        if ours.traffic.longest_gap_s > 0:
            ratio = theirs.traffic.longest_gap_s / ours.traffic.longest_gap_s
            print(f"longest gap: the StatefulSet's is {ratio:.0f}x redkube's")
        for outcome in outcomes:
            for log in (outcome.traffic, outcome.fast_connect):
                if log.failed:
                    print(f"{outcome.how}, first failures: {log.failed[:3]}")
    except BaseException:
        print(operator.tail(60), file=sys.stderr)
        raise
    finally:
        operator.stop()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
