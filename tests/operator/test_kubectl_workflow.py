"""The classic kubectl workflow on the test bed's real control plane, Redis 7 and Valkey 9:
apply a RedisCluster, watch it become Ready, check it with redis-cli, write keys, delete a
master's Pod, watch it heal, read every key back."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster

from testbed import ControlPlane
from tests.checks import assert_keys, redis_cli_check_at, write_keys
from tests.testbed.kube import JSON, apply, eventually, get, is_ready, pods, redis_cli

CLUSTER = """\
apiVersion: redkube.io/v1alpha1
kind: RedisCluster
metadata: {name: shop}
spec:
  shards: 3
  replicasPerShard: 1
  image: "%(image)s"
  storage: {size: 1Gi}
"""
KEYS = 10_000


def status(cp: ControlPlane, namespace: str) -> JSON:
    found: JSON = get(cp, namespace, "rediscluster", "shop").get("status") or {}
    return found


def password(cp: ControlPlane, namespace: str) -> str:
    secret = get(cp, namespace, "secret", "shop-auth")
    return base64.b64decode(secret["data"]["password"]).decode()


def running_pods(cp: ControlPlane, namespace: str) -> dict[str, JSON]:
    return {
        n: p
        for n, p in pods(cp, namespace, "redkube.io/cluster=shop").items()
        if p["status"].get("phase") == "Running"
        and is_ready(p)
        and not p["metadata"].get("deletionTimestamp")
    }


def roles(cp: ControlPlane, namespace: str, pw: str) -> dict[str, str]:
    return {
        name: redis_cli(pod["status"]["podIP"], pw, "role").splitlines()[0]
        for name, pod in running_pods(cp, namespace).items()
    }


def assert_linked_and_apart(cp: ControlPlane, namespace: str, pw: str) -> None:
    """Every replica's link is up (INFO replication), and no replica shares its master's node."""
    listed = running_pods(cp, namespace)
    node_of_ip = {p["status"]["podIP"]: p["spec"]["nodeName"] for p in listed.values()}
    replicas = 0
    for pod in listed.values():
        info = redis_cli(pod["status"]["podIP"], pw, "info", "replication")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        if fields.get("role") == "slave":
            replicas += 1
            assert fields["master_link_status"].strip() == "up", (pod["metadata"]["name"], info)
            master_ip = fields["master_host"].strip()
            assert node_of_ip[master_ip] != pod["spec"]["nodeName"], (pod["metadata"]["name"], info)
    assert replicas == 3


def shards_seen_by_redis(cp: ControlPlane, namespace: str, pw: str) -> set[tuple[str, str, str]]:
    """(master Pod, replica Pods, slot ranges) per master, from redis-cli CLUSTER NODES."""
    listed = running_pods(cp, namespace)
    pod_of_ip = {p["status"]["podIP"]: name for name, p in listed.items()}
    lines = redis_cli(next(iter(pod_of_ip)), pw, "cluster", "nodes").splitlines()
    nodes = [line.split() for line in lines]
    pod_of_id = {n[0]: pod_of_ip.get(n[1].split(":")[0], "?") for n in nodes}
    seen = set()
    for node in nodes:
        if "master" in node[2] and node[8:]:
            replicas = sorted(pod_of_id[r[0]] for r in nodes if r[3] == node[0])
            seen.add((pod_of_id[node[0]], ",".join(replicas), ",".join(node[8:])))
    return seen


def shards_in_status(cp: ControlPlane, namespace: str) -> set[tuple[str, str, str]]:
    return {
        (s.get("master", ""), ",".join(sorted(s["replicas"])), s["slots"])
        for s in status(cp, namespace).get("shards", [])
    }


def assert_status_names_the_shards(cp: ControlPlane, namespace: str, pw: str) -> None:
    """status.shards agrees with CLUSTER NODES (eventually: the status follows the cluster),
    and `redkube status` shows it."""
    eventually(
        lambda: shards_in_status(cp, namespace) == shards_seen_by_redis(cp, namespace, pw),
        f"status.shards {shards_in_status(cp, namespace)} matches CLUSTER NODES",
        30,
    )
    shown = subprocess.run(
        [sys.executable, "-m", "redkube", "status", "shop", "-n", namespace,
         f"--kubeconfig={cp.kubeconfig}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "Ready, 6/6 nodes healthy" in " ".join(shown.stdout.split()), shown.stdout
    for master, replicas, slots in shards_seen_by_redis(cp, namespace, pw):
        row = next(line for line in shown.stdout.splitlines() if line.split()[1:2] == [master])
        assert row.split()[2:] == [replicas, slots], shown.stdout
        pod_row = next(line for line in shown.stdout.splitlines() if line.startswith(master + " "))
        assert pod_row.split()[2] == "master", shown.stdout


def cluster_client(cp: ControlPlane, namespace: str, pw: str) -> RedisCluster:
    nodes = [ClusterNode(p["status"]["podIP"], 6379) for p in running_pods(cp, namespace).values()]
    return RedisCluster(startup_nodes=nodes, password=pw, socket_timeout=5, decode_responses=True)


@pytest.mark.namespace_prefix("op")
@pytest.mark.parametrize("image", ["redis:7.0", "valkey/valkey:9.1"])
def test_apply_check_write_delete_a_master_heal_read_back(
    control_plane: ControlPlane, operator: Path, namespace: str, image: str
) -> None:
    cp = control_plane
    apply(cp, namespace, CLUSTER % {"image": image})

    eventually(
        lambda: status(cp, namespace).get("phase") == "Ready", "the RedisCluster is Ready", 180
    )
    # The Pods' readiness probes (cluster_state:ok) follow within their period.
    eventually(lambda: len(running_pods(cp, namespace)) == 6, "6 Pods Running and Ready", 30)
    assert status(cp, namespace)["readyNodes"] == "6/6"
    table = cp.kubectl("get", "rdc", "-n", namespace).stdout
    assert "Ready" in table and "6/6" in table, table

    pw = password(cp, namespace)
    some_ip = next(iter(running_pods(cp, namespace).values()))["status"]["podIP"]
    redis_cli_check_at(some_ip, pw)
    assert_linked_and_apart(cp, namespace, pw)
    assert_status_names_the_shards(cp, namespace, pw)
    # The textbook's workflow: redis-cli inside the Pod, the password from its environment
    # (REDISCLI_AUTH). Test bed Pods share the machine's network namespace, so 127.0.0.1 is not
    # theirs: the Pod IP is named here; on real nodes plain `redis-cli ping` uses loopback.
    pinged = cp.kubectl(
        "exec", "-n", namespace, "shop-0-0", "--", "sh", "-c", 'redis-cli -h "$POD_IP" ping'
    )
    assert pinged.stdout.strip() == "PONG", (pinged.stdout, pinged.stderr)

    with cluster_client(cp, namespace, pw) as client:
        written = write_keys(client, KEYS)

    masters = sorted(n for n, role in roles(cp, namespace, pw).items() if role == "master")
    assert len(masters) == 3
    victim = masters[0]
    old_uid = running_pods(cp, namespace)[victim]["metadata"]["uid"]
    cp.kubectl("delete", "pod", "-n", namespace, victim, timeout=120)

    def healed() -> bool:
        listed = running_pods(cp, namespace)
        return (
            len(listed) == 6
            and victim in listed
            and listed[victim]["metadata"]["uid"] != old_uid
            and status(cp, namespace).get("phase") == "Ready"
        )

    eventually(healed, "the Pod is recreated and the cluster is Ready again", 180)
    some_ip = running_pods(cp, namespace)[victim]["status"]["podIP"]
    redis_cli_check_at(some_ip, pw)
    assert_linked_and_apart(cp, namespace, pw)
    assert_status_names_the_shards(cp, namespace, pw)
    with cluster_client(cp, namespace, pw) as client:
        assert_keys(client, written)
    events = get(cp, namespace, "events", "--field-selector=involvedObject.kind=RedisCluster")
    assert any("assign slots" in e["message"] for e in events["items"]), json.dumps(events)[:2000]
