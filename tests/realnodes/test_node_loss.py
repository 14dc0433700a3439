"""Node loss on real nodes: the link of a node that holds a master is cut (its kubelet, its
containerd and its Pods go on running, out of reach, as in a partition), under the operator
installed by Helm.

Checked: the master's replica on another node takes over and the cluster serves every slot again
from the nodes left (a write and a read through RedisCluster for keys on every shard; the keys
acknowledged by a replica before the cut all read back); the node turns NotReady and the status
names it and every shop Pod on it; once the link is mended the cluster is Ready 6/6 again,
`redis-cli --cluster check` clean, one master per node again, and every key back."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from testbed.realcluster import RealCluster
from tests.acked_writers import AckedWriter
from tests.checks import assert_keys
from tests.operator.test_kubectl_workflow import password
from tests.realnodes.conftest import OPERATOR_NAMESPACE
from tests.realnodes.test_operator_in_a_pod import deploy_shop, shop_ready, status
from tests.realnodes.test_real_nodes import kubectl, wait_for

NAMESPACE = "lost"
# A key in the middle of each third of the slots: one on each of the 3 shards.
PROBES = [
    next(k for n in range(10_000) if abs(key_slot((k := f"probe:{n}").encode()) - middle) < 500)
    for middle in (2730, 8192, 13653)
]


def shop_pods(cluster: RealCluster) -> list[dict[str, str]]:
    listed = json.loads(
        kubectl(cluster, "get", "pods", "-n", NAMESPACE, "-l", "redkube.io/cluster=shop", "-o",
                "json")
    )  # fmt: skip
    return [
        {
            "name": pod["metadata"]["name"],
            "node": pod["spec"].get("nodeName", ""),
            "ip": pod["status"].get("podIP", ""),
        }
        for pod in listed["items"]
    ]


def role(ip: str, secret: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", ip, "-a", secret, "--no-auth-warning", "role"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return done.stdout.split("\n", 1)[0].strip()


def serves_every_shard(ips: list[str], secret: str, probes: dict[str, str]) -> bool:
    """A fresh RedisCluster from the reachable nodes writes and reads a key on every shard."""
    try:
        client = RedisCluster(
            startup_nodes=[ClusterNode(ip, 6379) for ip in ips], password=secret,
            socket_timeout=2, socket_connect_timeout=2,
        )  # fmt: skip
    except (RedisError, RedisClusterException):
        return False
    try:
        for key, value in probes.items():
            client.set(key, value)
        return all(client.get(key) == value.encode() for key, value in probes.items())
    except (RedisError, RedisClusterException):
        return False
    finally:
        client.close()


@pytest.mark.timeout(1200)
def test_a_node_cut_off_fails_over_is_named_in_the_status_and_heals_when_back(
    real_cluster: RealCluster, operator_in_pods: None
) -> None:
    cluster = real_cluster
    try:
        deploy_shop(cluster, NAMESPACE)
        secret = password(cluster.cp, NAMESPACE)

        def masters_by_node() -> dict[str, dict[str, str]]:
            return {p["node"]: p for p in shop_pods(cluster) if role(p["ip"], secret) == "master"}

        # One master per node: Ready comes first, spreading the masters may follow it.
        masters = wait_for("one master per node", lambda: (m := masters_by_node()) and
                           len(m) == 3 and m, 120)  # fmt: skip
        pods = shop_pods(cluster)

        # Cut a node that holds a master but not the operator's leader (its standby may be there).
        lease = kubectl(
            cluster, "get", "lease", "redkube-operator", "-n", OPERATOR_NAMESPACE, "-o", "json"
        )
        leader = json.loads(lease)["spec"]["holderIdentity"]
        leader_node = json.loads(
            kubectl(cluster, "get", "pod", leader, "-n", OPERATOR_NAMESPACE, "-o", "json")
        )["spec"]["nodeName"]
        victim = next(node for node in sorted(masters) if node != leader_node)
        lost_master = masters[victim]["name"]
        shard = lost_master.rsplit("-", 2)[1]
        heir = next(p for p in pods if p["name"] != lost_master and f"-{shard}-" in p["name"])
        assert heir["node"] != victim, pods
        on_victim = sorted(p["name"] for p in pods if p["node"] == victim)
        ips = [p["ip"] for p in pods]
        survivors = [p["ip"] for p in pods if p["node"] != victim]

        # Keys every replica has (SET then WAIT 1 on one connection), then the cut.
        client = RedisCluster(startup_nodes=[ClusterNode(ip, 6379) for ip in ips], password=secret)
        acknowledged = {}
        for n in range(1500):
            key = f"acked:{n}"
            assert AckedWriter._set_and_wait(client, key, str(n)) >= 1, key
            acknowledged[key] = str(n)
        client.close()
        victim_index = int(victim.rsplit("-", 1)[1])
        cluster.fabric.cut(victim_index)
        cut = time.monotonic()
        try:
            wait_for(
                f"{heir['name']} to take over shard {shard} from {lost_master}",
                lambda: role(heir["ip"], secret) == "master",
                120,
            )
            probes = {key: "yes" for key in PROBES}
            wait_for(
                "every shard served from the nodes left",
                lambda: serves_every_shard(survivors, secret, probes),
                120,
            )
            served = time.monotonic() - cut
            client = RedisCluster(
                startup_nodes=[ClusterNode(ip, 6379) for ip in survivors], password=secret,
                decode_responses=True,
            )  # fmt: skip
            assert_keys(client, acknowledged)
            client.close()
            message = wait_for(
                f"the status to name {victim} and its Pods {on_victim}",
                lambda: (
                    m
                    if f"{victim} is NotReady: {', '.join(on_victim)}"
                    in (m := str(status(cluster, NAMESPACE).get("message", "")))
                    else None
                ),
                240,
            )
            assert status(cluster, NAMESPACE).get("phase") != "Ready", message
            print(
                f"\n{victim} cut: every shard served again after {served:.1f}s, the status "
                f"named it after {time.monotonic() - cut:.1f}s: {message}"
            )
        finally:
            cluster.fabric.mend(victim_index)

        wait_for(
            "shop Ready with 6/6 nodes after the link is mended",
            lambda: shop_ready(cluster, NAMESPACE),
            420,
        )
        pods = shop_pods(cluster)
        by_name = {p["name"]: p for p in pods}
        # The old master came back as a replica; the operator then spreads the masters over the
        # nodes again (a graceful failover), so each node holds one master as before.
        assert {p["node"] for p in pods if role(p["ip"], secret) == "master"} == set(masters)
        check = subprocess.run(
            ["redis-cli", "-a", secret, "--no-auth-warning", "--cluster", "check",
             f"{by_name[heir['name']]['ip']}:6379"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "[OK] All 16384 slots covered." in check.stdout, check.stdout
        assert "[ERR]" not in check.stdout and "[WARNING]" not in check.stdout, check.stdout
        client = RedisCluster(
            startup_nodes=[ClusterNode(p["ip"], 6379) for p in pods], password=secret,
            decode_responses=True,
        )  # fmt: skip
        assert_keys(client, acknowledged)
        client.close()
    finally:
        cluster.cp.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
