"""`redkube user set|delete`: ACL users applied live on every node and kept across restarts;
the default user off while there are users, redkube working (and healing) as its own user with
no read command (GET ...); a user's password rotated with a grace period; bad input refused."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.checks import assert_fully_linked, redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for


def password_file(folder: Path, name: str) -> tuple[Path, str]:
    password = secrets.token_urlsafe(16)
    path = folder / f"{name}.password"
    path.write_text(password + "\n")
    return path, password


def as_user(cluster: LocalCluster, user: str, password: str) -> RedisCluster:
    nodes = [ClusterNode(m["ip"], 6379) for m in cluster.members()]
    return RedisCluster(
        startup_nodes=nodes, username=user, password=password, decode_responses=True,
        socket_timeout=2, socket_connect_timeout=1,
    )  # fmt: skip


def node_as(cluster: LocalCluster, member: str, user: str | None, password: str) -> redis.Redis:
    return redis.Redis(host=cluster.member(member)["ip"], port=6379, username=user,
                       password=password, decode_responses=True, socket_timeout=2)  # fmt: skip


def refuses(redkube: Redkube, *args: str) -> str:
    done = redkube.run(*args)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("redkube: error:"), done.stderr
    return lines[0]


@pytest.mark.timeout(300)
def test_users_live_and_redkube_on_its_own_user(
    redkube: Redkube, server: str, tmp_path: Path
) -> None:
    cluster = redkube.up_cluster("acl", 3, 1, server)
    with cluster.cluster_client() as client:
        client.set("app:seed", "1")
        client.set("other:seed", "1")
    writer_file, writer_pw = password_file(tmp_path, "writer")
    reader_file, reader_pw = password_file(tmp_path, "reader")

    # Bad input: one line each, nothing changed.
    def refused(user: str, rules: str, *more: str) -> str:
        return refuses(redkube, "user", "set", user, "--name", "acl", "--rules", rules, *more)

    given = ("--password-file", str(writer_file))
    assert "reserved" in refused("redkube", "+@all", *given)
    assert "refuses" in refused("app", "~app:* +@nonsense", *given)
    assert "not allowed" in refused("app", f"~app:* >{writer_pw}", *given)
    assert "password" in refused("app", "+@all")
    assert not (cluster.dir / "users.json").exists()
    assert cluster.username is None

    # The first user: redkube switches to its own user, the default user goes off.
    redkube.ok("user", "set", "writer", "--name", "acl", "--rules", "~app:* +@all",
               "--password-file", str(writer_file))  # fmt: skip
    assert cluster.username == "redkube"
    first = cluster.members()[0]["name"]
    with (
        node_as(cluster, first, None, cluster.password) as default,
        pytest.raises(redis.AuthenticationError),
    ):
        default.ping()
    with as_user(cluster, "writer", writer_pw) as writer:
        writer.set("app:1", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            writer.set("other:1", "x")
    # redkube's own user administers the cluster but runs no read command.
    with cluster.client(first) as admin:
        assert admin.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.get("app:seed")

    redkube.ok("user", "set", "reader", "--name", "acl", "--rules", "~app:* +@read",
               "--password-file", str(reader_file))  # fmt: skip
    shown = " ".join(redkube.ok("status", "--name", "acl").stdout.split())
    assert "acl users: reader, writer; default user off, redkube acts as redkube" in shown, shown
    listed = redkube.ok("user", "list", "--name", "acl").stdout
    assert "reader  ~app:* +@read" in listed and "writer  ~app:* +@all" in listed, listed
    reader = as_user(cluster, "reader", reader_pw)
    try:
        assert reader.get("app:1") == "x" and reader.get("app:seed") == "1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.get("other:seed")
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("app:2", "y")
        # Changed live: the same connections may write now.
        redkube.ok("user", "set", "reader", "--name", "acl", "--rules", "~app:* +@read +@write")
        reader.set("app:2", "y")

        # A master killed: the loop heals the cluster as its own user (failover, the old master
        # back as a replica that links with masteruser redkube, masters spread again).
        victim = cluster.masters()[0]
        redkube.ok("kill", victim)
        wait_for(lambda: any("failover (force)" in e for e in cluster.events()) or None, 60,
                 "the replica to take over")  # fmt: skip
        cluster.wait_ready(120)
        redis_cli_check(cluster)
        assert_fully_linked(cluster)
        # The restarted node has the users from its redis.conf.
        with node_as(cluster, victim, "reader", reader_pw) as direct:
            assert direct.ping()
        assert reader.get("app:2") == "y" and reader.get("app:1") == "x"

        # A user's password rotated: the old one works for the grace period, then is refused.
        new_file, new_pw = password_file(tmp_path, "reader-new")
        redkube.ok("user", "set", "reader", "--name", "acl", "--password-file", str(new_file),
                   "--password-grace", "3")  # fmt: skip
        with node_as(cluster, first, "reader", reader_pw) as old:
            assert old.ping()
        with node_as(cluster, first, "reader", new_pw) as new:
            assert new.ping()

        def old_refused() -> bool | None:
            with node_as(cluster, first, "reader", reader_pw) as old:
                try:
                    old.ping()
                except redis.AuthenticationError:
                    return True
            return None

        wait_for(old_refused, 60, "the reader's old password to be refused")
    finally:
        reader.close()

    # The cluster's own password rotated: redkube's user takes the new one.
    old_admin = cluster.password
    redkube.ok("up", "--name", "acl", "--rotate-password", "--password-grace", "1")
    wait_for(lambda: not (cluster.dir / "password.old").exists() or None, 60, "the rotation")
    with (
        node_as(cluster, first, "redkube", old_admin) as stale,
        pytest.raises(redis.AuthenticationError),
    ):
        stale.ping()
    redis_cli_check(cluster)

    # Resharding as redkube's own user: keys move (MIGRATE with AUTH2, or Valkey's atomic
    # migration, which authenticates as the masteruser).
    with as_user(cluster, "writer", writer_pw) as writer:
        written = {f"app:{n}": str(n) for n in range(3, 2003)}
        for key, value in written.items():
            writer.set(key, value)
    shown = " ".join(redkube.ok("up", "--name", "acl", "--shards", "4").stdout.split())
    assert "--user reader --askpass" in shown, shown
    assert cluster.password not in shown
    with as_user(cluster, "writer", writer_pw) as writer:
        assert {k: writer.get(k) for k in written} == written
        assert [writer.get(k) for k in ("app:seed", "app:1", "app:2")] == ["1", "x", "y"]
    assert redis_cli_check(cluster).count("slots |") == 4

    # No password in any process's arguments.
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not any(p in processes for p in (writer_pw, reader_pw, new_pw, cluster.password))

    # Removed live; the last one gone, the default user is on again and redkube uses it.
    redkube.ok("user", "delete", "reader", "--name", "acl")
    with (
        node_as(cluster, first, "reader", new_pw) as gone,
        pytest.raises(redis.AuthenticationError),
    ):
        gone.ping()
    redkube.ok("user", "delete", "writer", "--name", "acl")
    assert cluster.username is None
    with node_as(cluster, first, None, cluster.password) as default:
        assert "redkube" not in default.acl_users()
    with cluster.cluster_client() as client:
        assert client.get("app:1") == "x"
    cluster.wait_ready()
    redis_cli_check(cluster)
    assert_fully_linked(cluster)
