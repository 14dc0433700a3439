"""A node whose volume holds another cluster's config is reset if empty, refused if not."""

from __future__ import annotations

import shutil

from tests.checks import assert_fully_linked, redis_cli_check, write_keys
from tests.clusters import LocalCluster, Redkube, wait_for


def graft(
    source: LocalCluster, target: LocalCluster, node: str, other: str, keep_data: bool
) -> None:
    """Give ``target``'s node ``node`` the data dir of ``source``'s node ``other``."""
    destination = target.dir / "nodes" / node / "data"
    shutil.rmtree(destination)
    shutil.copytree(source.dir / "nodes" / other / "data", destination)
    if not keep_data:
        for path in destination.iterdir():
            if path.name != "nodes.conf":
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def known_ids(cluster: LocalCluster, name: str) -> set[str]:
    with cluster.client(name) as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    return {line.split()[0] for line in text.splitlines()}


def two_stopped_clusters(redkube: Redkube, server: str) -> tuple[LocalCluster, LocalCluster]:
    one = redkube.up_cluster("one", 1, 1, server)
    two = redkube.up_cluster("two", 1, 1, server)
    with two.cluster_client() as client:
        write_keys(client, 100, prefix="two")
    two.wait_ready()
    redkube.ok("down", "--name", "one")
    redkube.ok("down", "--name", "two")
    return one, two


def test_empty_foreign_node_is_reset_and_joins(redkube: Redkube, server: str) -> None:
    one, two = two_stopped_clusters(redkube, server)
    graft(two, one, "one-0-1", "two-0-1", keep_data=False)

    redkube.ok("up", "--name", "one")

    assert any(e.startswith("reset ") for e in one.events()), one.events()
    assert len(known_ids(one, "one-0-1")) == 2
    assert known_ids(one, "one-0-0") == known_ids(one, "one-0-1")
    redis_cli_check(one)
    assert_fully_linked(one)


def test_foreign_node_with_data_is_never_reset(redkube: Redkube, server: str) -> None:
    one, two = two_stopped_clusters(redkube, server)
    redkube.ok("up", "--name", "one")
    with one.cluster_client() as client:
        ours = write_keys(client, 500, prefix="one")
    redkube.ok("down", "--name", "one")
    graft(two, one, "one-0-1", "two-0-1", keep_data=True)

    done = redkube.run("up", "--name", "one", "--timeout", "5")

    assert done.returncode == 3, done.stderr  # not ready: it refuses instead of guessing
    step = wait_for(lambda: one.status()["step"], 10, "a status")
    assert "belongs to another cluster" in step and "refusing to reset" in step, step
    with one.client("one-0-1") as client:
        assert client.dbsize() == 100  # the foreign data is untouched
    with one.client("one-0-0") as client:
        assert client.dbsize() == 500
    assert not any(e.startswith("reset ") for e in one.events())
    # one-0-0 serves all 16384 slots; read straight from it (RedisCluster refuses to start
    # while a startup node reports the foreign topology).
    with one.client("one-0-0") as client:
        pipe = client.pipeline(transaction=False)
        for key in ours:
            pipe.get(key)
        assert pipe.execute() == list(ours.values())
