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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.*

from redkube.testbed import ControlPlane
from tests.acked_writers import AckedWriter
from tests.operator.test_kubectl_workflow import CLUSTER, cluster_client, password
from tests.operator.test_operator_full_restart import (
    WRITES_BETWEEN_ROUNDS,
    Connector,
    Operator,
    Round,
    assert_whole,
    back_ready,
    install_crd,
    restart_every_pod,
    summary,
    wait_for_writes,
)
from tests.testbed.kube import apply, eventually

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "testbed" / "build-binaries.sh"
NAMESPACE = "full-bench"
NETWORK = "127.247"


def bindir() -> Path:
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/local/go/bin")
    done = subprocess.run(
        [str(BUILD)], env=env, capture_output=True, text=True, check=True, timeout=3600
    )
    return Path(done.stdout.strip().splitlines()[-1])


def lost_writes(cp: ControlPlane, pw: str, acknowledged: dict[str, str]) -> int:
    """How many acknowledged keys do not read back with their value."""
    keys = list(acknowledged)
    lost = 0
    with cluster_client(cp, NAMESPACE, pw) as client:
        for start in range(0, len(keys), 500):
            pipe = client.pipeline()
            for key in keys[start : start + 500]:
                pipe.get(key)
            values = pipe.execute()
            lost += sum(
                value != acknowledged[key]
                for key, value in zip(keys[start : start + 500], values, strict=True)
            )
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--image", default="redis:7.0", help="e.g. redis:7.0, valkey/valkey:9.1")
    parser.add_argument(
        "--kill-round", type=int, default=5, help="round that also SIGKILLs the operator (0: none)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="redkube-bench-full-restart-"))
    cp = ControlPlane(workdir, bindir(), nodes=3, network=NETWORK)
    operator = Operator(cp, workdir / "operator.log", NAMESPACE)
    writer: AckedWriter | None = None
    rounds: list[Round] = []
    cp.start()
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
        print(f"acknowledged writes lost: {lost_writes(cp, pw, log.acknowledged)}")
    except BaseException:
        if operator.log.exists():
            lines = operator.log.read_text(errors="replace").splitlines()
            print("operator log (last 60 lines):\n" + "\n".join(lines[-60:]), file=sys.stderr)
        raise
    finally:
        if writer is not None:
            writer.stop()
        operator.stop()
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
