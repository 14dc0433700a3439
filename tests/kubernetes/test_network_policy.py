"""The NetworkPolicy each RedisCluster gets: what it lets in, checked as data, and accepted by a
real apiserver (`kubectl apply --dry-run=server`). The test bed's network plugin (the CNI bridge)
does not enforce NetworkPolicy, so enforcement itself is not tested here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from redkube.kubernetes.building import REDIS_PORT, build_all, build_network_policy
from redkube.kubernetes.clusters import parse
from redkube.model.specs import SpecError
from testbed import ControlPlane

JSON = dict[str, Any]


def cluster_object(network: JSON | None = None) -> JSON:
    spec: JSON = {"shards": 3}
    if network is not None:
        spec["networkPolicy"] = network
    return {"metadata": {"name": "shop", "namespace": "apps", "uid": "u1"}, "spec": spec}


def test_the_cluster_reaches_itself_on_every_port_and_the_rest_only_the_client_port() -> None:
    policy = build_network_policy(parse(cluster_object()), "redkube-system")
    spec = policy["spec"]
    assert policy["metadata"]["name"] == "shop-network"
    assert spec["podSelector"] == {"matchLabels": {"redkube.io/cluster": "shop"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    own, clients, metrics = spec["ingress"]
    # The metrics sidecar's port, from anywhere (Prometheus may run anywhere).
    assert metrics == {"ports": [{"protocol": "TCP", "port": 9121}]}
    assert own == {"from": [{"podSelector": {"matchLabels": {"redkube.io/cluster": "shop"}}}]}
    assert "ports" not in own  # the bus and replication: every port, between the cluster's Pods
    assert clients["ports"] == [{"protocol": "TCP", "port": REDIS_PORT}]  # not the bus port
    assert clients["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redkube-system"}}},
        # a restore's loaders, which MIGRATE the backup's keys in
        {"podSelector": {"matchLabels": {"redkube.io/restore-of": "shop"}}},
        {"podSelector": {}},  # the default: every Pod of the cluster's namespace
    ]
    # Out: to each other (replication, the bus, MIGRATE) and DNS, nowhere else.
    assert spec["egress"] == [
        {"to": [{"podSelector": {"matchLabels": {"redkube.io/cluster": "shop"}}}]},
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]


def test_clients_come_from_the_spec_and_the_policy_can_be_turned_off() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "shop"}}}
    policy = build_network_policy(parse(cluster_object({"clients": [peer]})), "ops")
    assert policy["spec"]["ingress"][1]["from"][2:] == [peer]
    kinds = {o["kind"] for o in build_all(parse(cluster_object({"enabled": False})), "pw")}
    assert "NetworkPolicy" not in kinds


@pytest.mark.parametrize(
    "network",
    [{"clients": [{"pods": {}}]}, {"clients": [{}]}, {"clients": "everyone"}, {"enabled": "yes"}],
)
def test_bad_peers_are_refused_by_the_parser(network: JSON) -> None:
    with pytest.raises(SpecError, match="networkPolicy"):
        parse(cluster_object(network))


def test_the_apiserver_accepts_the_policies(control_plane: ControlPlane) -> None:
    peers = [
        {"podSelector": {"matchLabels": {"app": "shop"}}},
        {"namespaceSelector": {"matchLabels": {"team": "shop"}}, "podSelector": {}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
    ]
    for network in (None, {"clients": peers}):
        policy = build_network_policy(parse(cluster_object(network)), "redkube-system")
        policy["metadata"]["namespace"] = "default"
        del policy["metadata"]["ownerReferences"]  # its owner does not exist here
        done = control_plane.kubectl(
            "apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(policy)
        )
        accepted = json.loads(done.stdout)["spec"]
        assert (accepted["ingress"], accepted["egress"]) == (
            policy["spec"]["ingress"], policy["spec"]["egress"]
        )  # fmt: skip
