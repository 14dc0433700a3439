"""A local cluster's password stays in its 0600 file and the servers' 0600 redis.conf: it is not
printed by `redkube up`, `redkube status` or `redkube logs`, not written to the supervisor's log,
status or record, nor to a server's log, and no process carries it in its arguments (`ps`),
through a failover and a rolling restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.clusters import Redkube, wait_for
from tests.conftest import REDIS, server_path


@pytest.mark.timeout(240)
def test_the_password_appears_nowhere_but_its_files(redkube: Redkube) -> None:
    path = server_path(REDIS)
    if path is None:
        pytest.skip("redis-server not installed")
    up = redkube.run("up", "--name", "hush", "--shards", "3", "--replicas", "1", "--server", path)
    assert up.returncode == 0, up.stderr
    cluster_dir = redkube.home / "hush"
    password = (cluster_dir / "password").read_text().strip()
    assert len(password) >= 24
    said = [up.stdout + up.stderr]
    # What happens to a cluster: a master killed (failover, Events), a live setting and a
    # setting that needs a rolling restart (every node restarted on a new redis.conf).
    redkube.ok("kill", "hush-0-0")
    wait_for(lambda: redkube.run("status", "hush").returncode == 0 or None, 30, "status")
    said.append(redkube.ok("up", "--name", "hush", "--config", "maxmemory-policy=allkeys-lru",
                           "--config", "databases=1").stdout)  # fmt: skip
    for args in (("status", "hush"), ("logs", "--name", "hush", "-n", "500"),
                 ("logs", "hush-0-0", "--name", "hush", "-n", "500"), ("list",)):  # fmt: skip
        done = redkube.ok(*args)
        said.append(done.stdout + done.stderr)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    said.append(ps)
    assert "redis-server" in ps  # the cluster runs: its processes are in the listing

    files = [p for p in cluster_dir.rglob("*") if p.is_file()]
    holders = {p for p in files if password.encode() in p.read_bytes()}
    assert holders == {cluster_dir / "password"} | {
        cluster_dir / "nodes" / m / "redis.conf" for m in members(cluster_dir)
    }, sorted(str(p) for p in holders)
    for holder in holders:
        assert holder.stat().st_mode & 0o777 == 0o600, holder
    for text in said:
        assert password not in text
    assert "REDISCLI_AUTH" in said[0]  # the connect line reads the file instead


def members(cluster_dir: Path) -> list[str]:
    return sorted(p.name for p in (cluster_dir / "nodes").iterdir() if p.is_dir())
