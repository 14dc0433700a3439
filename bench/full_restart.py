"""Full restart on the test bed: every Pod of a 3 shards x 1 replica RedisCluster deleted at once,
N times in a row, under a writer that does SET then WAIT 1 (redis-py's RedisCluster, against the
Pod IPs). Per round: seconds from the deletion to status Ready 6/6 with six new Pods Running; in
round --kill-round the operator is SIGKILLed right after the deletion and a new one started once
the new Pods exist. The scenario is tests/operator/test_operator_full_restart.py's, on a fresh
control plane.

No reference tool reports this figure on this machine, so the numbers are printed as they are.
Run: python bench/full_restart.py [--rounds 10] [--image redis:7.0] [--kill-round 5]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.*

from testbed.fabric import Fabric
from tests.acked_writers import AckedWriter
from tests.operator.conftest import Operator, install_crd
from tests.operator.test_kubectl_workflow import CLUSTER, cluster_client, password
from tests.operator.test_operator_full_restart import (
    WRITES_BETWEEN_ROUNDS,
    Connector,
    Round,
    assert_whole,
    back_ready,
    restart_every_pod,
    summary,
    wait_for_writes,
)
from tests.testbed.fixtures import start_real_cluster
from tests.testbed.kube import apply, eventually

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "full-bench"
FABRIC, PODS = "10.252", "10.242"  # apart from the tests' and make testbed-up's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--image", default="redis:7.0", help="e.g. redis:7.0, valkey/valkey:9.1")
    parser.add_argument(
        "--kill-round", type=int, default=5, help="round that also SIGKILLs the operator (0: none)"
    )
    args = parser.parse_args()
    # A SIGTERM (timeout, kill) ends through the finally below: the cluster and its network
    # namespaces go with the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="redkube-bench-full-restart-"))
    cluster = start_real_cluster(workdir, Fabric(3, prefix=FABRIC, pods=PODS))
    cp = cluster.cp
    operator = Operator(cp, workdir / "operator.log", NAMESPACE)
    writer: AckedWriter | None = None
    rounds: list[Round] = []
    try:
        install_crd(cp)
        cp.kubectl("create", "namespace", NAMESPACE)
        operator.start()
        began = time.monotonic()
        apply(cp, NAMESPACE, CLUSTER % {"image": args.image})
        eventually(lambda: back_ready(cp, NAMESPACE, set()), "the RedisCluster is Ready 6/6", 300)
        print(f"bootstrap to Ready 6/6: {time.monotonic() - began:.1f}s", file=sys.stderr)
        pw = password(cp, NAMESPACE)
        writer = AckedWriter(Connector(cp, NAMESPACE, pw), "bench", max_seconds=24 * 3600)
        writer.start()
        wait_for_writes(writer, WRITES_BETWEEN_ROUNDS)
        for number in range(1, args.rounds + 1):
            killed = operator if number == args.kill_round else None
            rounds.append(restart_every_pod(cp, NAMESPACE, pw, number, killed))
            print(f"round {number}: Ready {rounds[-1].seconds:.1f}s", file=sys.stderr)
            assert_whole(cp, NAMESPACE, pw)
            wait_for_writes(writer, len(writer.log.acknowledged) + WRITES_BETWEEN_ROUNDS)
        log = writer.stop()
        writer = None
        print(f"full restart, 3 shards x 1 replica, {args.image}, {args.rounds} rounds")
        print(summary(rounds, log))
        with cluster_client(cp, NAMESPACE, pw) as client:
            print(f"acknowledged writes lost: {log.lost_in(client)}")
    except BaseException:
        print(operator.tail(60), file=sys.stderr)
        raise
    finally:
        if writer is not None:
            writer.stop()
        operator.stop()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
