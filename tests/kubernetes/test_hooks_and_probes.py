"""The preStop hook and the readiness probe, run by `sh` against a stand-in redis-cli.

The stand-in answers from files in a directory (the role, INFO replication, CLUSTER INFO), logs
every call, and can hang like an unresponsive server; `timeout` is the real one.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from redkube.kubernetes.building import (
    CONFIG_DIR,
    GRACE_SECONDS,
    PRESTOP_SCRIPT,
    READY_SCRIPT,
    RUN_DIR,
    START_SCRIPT,
)

POD_IP = "10.1.0.5"
REPLICA_IP = "10.1.0.6"

FAKE_CLI = """\
#!/bin/sh
# redis-cli -h HOST COMMAND...: answers from $FAKE_DIR, logs to $FAKE_DIR/calls.
dir=$FAKE_DIR
echo "$*" >> "$dir/calls"
[ -e "$dir/hang" ] && exec sleep 600
host=$2
shift 2
case "$*" in
  role) if [ -e "$dir/failed-over" ]; then echo slave; else cat "$dir/role.$host"; fi ;;
  "info replication") cat "$dir/info.$host" ;;
  "cluster info") cat "$dir/cluster.$host" ;;
  "cluster failover") touch "$dir/failed-over"; echo OK ;;
  *) echo "ERR unknown command"; exit 1 ;;
esac
"""


@dataclass
class FakeServer:
    dir: Path

    def answer(self, what: str, host: str, text: str) -> None:
        # redis-cli prints an array reply (ROLE) one element a line; a bulk string (INFO, CLUSTER
        # INFO) as the server wrote it, with \r\n line ends.
        if what != "role":
            text = text.replace("\n", "\r\n")
        (self.dir / f"{what}.{host}").write_text(text)

    def hang(self) -> None:
        (self.dir / "hang").touch()

    def calls(self) -> list[str]:
        log = self.dir / "calls"
        return log.read_text().splitlines() if log.exists() else []

    def run(self, script: str) -> int:
        env = {
            **os.environ,
            "PATH": f"{self.dir / 'bin'}:{os.environ['PATH']}",
            "FAKE_DIR": str(self.dir),
            "POD_IP": POD_IP,
        }
        # The grace period bounds the hook in Kubernetes; here it is only a safety net.
        done = subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, timeout=GRACE_SECONDS, check=False
        )
        return done.returncode


@pytest.fixture
def server(tmp_path: Path) -> FakeServer:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "redis-cli"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    return FakeServer(tmp_path)


MASTER_INFO = f"""\
# Replication
role:master
connected_slaves:1
slave0:ip={REPLICA_IP},port=6379,state=online,offset=100,lag=0
"""
REPLICA_INFO = """\
# Replication
role:slave
master_host:10.1.0.7
master_port:6379
master_link_status:{link}
"""


def test_prestop_hands_a_masters_role_to_its_online_replica(server: FakeServer) -> None:
    server.answer("role", POD_IP, "master\n10\n")
    server.answer("info", POD_IP, MASTER_INFO)
    assert server.run(PRESTOP_SCRIPT) == 0
    assert server.calls() == [
        f"-h {POD_IP} role",
        f"-h {POD_IP} info replication",
        f"-h {REPLICA_IP} cluster failover",
        f"-h {POD_IP} role",
    ]


def test_prestop_leaves_a_replica_alone(server: FakeServer) -> None:
    server.answer("role", POD_IP, "slave\n10.1.0.7\n")
    assert server.run(PRESTOP_SCRIPT) == 0
    assert server.calls() == [f"-h {POD_IP} role"]


def test_prestop_ends_when_the_server_hangs(server: FakeServer) -> None:
    """Each call is cut off by `timeout`: an unresponsive server does not hold the Pod's
    deletion for the whole grace period."""
    server.hang()
    assert server.run(PRESTOP_SCRIPT) == 0
    assert server.calls() == [f"-h {POD_IP} role"]


@pytest.mark.parametrize(
    ("state", "info", "ready"),
    [
        ("ok", MASTER_INFO, True),
        ("ok", REPLICA_INFO.format(link="up"), True),
        ("ok", REPLICA_INFO.format(link="down"), False),  # syncing, or its master is gone
        ("fail", MASTER_INFO, False),  # the cluster lost slots
        (None, MASTER_INFO, False),  # cluster info failed: not a cluster node yet
    ],
    ids=["master", "linked-replica", "unlinked-replica", "cluster-failed", "no-answer"],
)
def test_ready_means_a_working_member_of_a_working_cluster(
    server: FakeServer, state: str | None, info: str, ready: bool
) -> None:
    if state is not None:
        server.answer("cluster", POD_IP, f"cluster_state:{state}\ncluster_slots_assigned:16384\n")
    server.answer("info", POD_IP, info)
    assert (server.run(READY_SCRIPT) == 0) is ready


def test_not_ready_when_the_server_hangs(server: FakeServer) -> None:
    server.hang()
    assert server.run(READY_SCRIPT) != 0


START_IN_A_POD = """\
set -eu
ip link set lo up
ip addr add "$POD_IP/32" dev lo
printf 'port 6379\\ncluster-enabled yes\\ndir %s/data\\nsave ""\\n' "$WORK" > "$WORK/etc/redis.conf"
sh "$WORK/etc/start.sh" > "$WORK/server.log" 2>&1 &
for _ in $(seq 100); do redis-cli -h "$POD_IP" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "loopback: $(redis-cli ping 2>&1)"
echo "pod ip: $(redis-cli -h "$POD_IP" ping 2>&1)"
echo "announced: $(redis-cli cluster myshardid >/dev/null 2>&1; redis-cli cluster nodes \\
  | grep myself | cut -d' ' -f2)"
redis-cli shutdown nosave >/dev/null 2>&1 || true
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private network namespace")
def test_the_server_listens_on_the_pod_ip_and_its_own_loopback(tmp_path: Path) -> None:
    """The textbook `kubectl exec <pod> -- redis-cli ping`: start.sh (its directories moved under
    tmp_path), with a real redis-server, in a network namespace of its own (as a Pod has),
    answers on 127.0.0.1 with the password from the environment (REDISCLI_AUTH, as the Pod has
    it), and still announces the Pod IP."""
    for part in ("etc", "run", "data"):
        (tmp_path / part).mkdir()
    script = START_SCRIPT.replace(CONFIG_DIR, str(tmp_path / "etc"))
    (tmp_path / "etc" / "start.sh").write_text(script.replace(RUN_DIR, str(tmp_path / "run")))
    done = subprocess.run(
        ["unshare", "--net", "--fork", "sh", "-c", START_IN_A_POD],
        env={
            **os.environ,
            "WORK": str(tmp_path),
            "POD_IP": "10.244.7.5",
            "REDIS_PASSWORD": "s3cret",
            "REDISCLI_AUTH": "s3cret",
            "REDKUBE_SERVER": "redis-server",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = done.stdout + done.stderr + (tmp_path / "server.log").read_text(errors="replace")
    assert "loopback: PONG" in done.stdout, report
    assert "pod ip: PONG" in done.stdout, report
    assert "announced: 10.244.7.5:6379@16379" in done.stdout, report


def test_a_pod_on_a_loopback_ip_does_not_take_the_machine_s_loopback() -> None:
    """In the test bed every Pod shares the machine's network namespace with a 127.x Pod IP: the
    script must not bind 127.0.0.1:6379, or a second Pod could not start."""
    assert 'case "$POD_IP" in 127.*) loopback=""' in START_SCRIPT
