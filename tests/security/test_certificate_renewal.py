"""Certificates renewed under load, loaded live: a TLS cluster whose certificates live 30 s
(`REDKUBE_CERT_LIFETIME_S`, so renewal comes within the test) keeps serving a RedisCluster
client, an acknowledged writer and a client that opens a new TLS connection for every command,
with no failed command, while the supervisor issues every node a new certificate and the servers
load it by CONFIG SET (no restart: the same processes serve the new certificates)."""

from __future__ import annotations

import random
import socket
import ssl
import time
from collections.abc import Callable

import pytest
import redis
from cryptography import x509

from tests.acked_writers import AckedWriter
from tests.clusters import LocalCluster, Redkube, wait_for
from tests.datasets import Traffic
from tests.writers import Background

LIFETIME_S = 30


class Handshakes(Background):
    """A new TLS connection (CA verified, host name checked) and a PING, over and over."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        super().__init__()
        self.connect = connect
        self.done = 0
        self.failed: list[str] = []

    def _run(self) -> None:
        deadline = time.monotonic() + 200
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with self.connect() as client:
                    client.ping()
                self.done += 1
            except redis.RedisError as error:
                self.failed.append(f"{type(error).__name__}: {error}")
            time.sleep(0.01)


def serial_served(cluster: LocalCluster, ip: str) -> int:
    """The serial number of the certificate a node presents to a new connection."""
    context = ssl.create_default_context(cafile=cluster.tls["ssl_ca_certs"])
    context.load_cert_chain(cluster.tls["ssl_certfile"], cluster.tls["ssl_keyfile"])
    with (
        socket.create_connection((ip, 6379), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=ip) as secure,
    ):
        der = secure.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.timeout(300)
def test_certificates_renewed_under_load_fail_no_command(redkube: Redkube, tls_server: str) -> None:
    path = tls_server
    redkube.env["REDKUBE_CERT_LIFETIME_S"] = str(LIFETIME_S)  # the supervisor's
    cluster = redkube.up_cluster("renew", 3, 1, path, "--tls")
    members = [m["name"] for m in cluster.members()]
    first = {m["name"]: serial_served(cluster, m["ip"]) for m in cluster.members()}
    pids = {name: cluster.node_pid(name) for name in members}

    def connect() -> redis.Redis:
        member = random.choice(cluster.members())
        return redis.Redis(host=member["ip"], port=6379, password=cluster.password,
                           socket_timeout=5, socket_connect_timeout=5, **cluster.tls)  # fmt: skip

    traffic = Traffic(cluster.cluster_client(), "traffic")
    acked = AckedWriter(cluster.cluster_client, "acked", max_seconds=200)
    handshakes = Handshakes(connect)
    for load in (traffic, acked, handshakes):
        load.start()
    try:
        wait_for(
            lambda: (
                all(
                    any(e.startswith(f"{name} renewed its certificate") for e in cluster.events())
                    for name in members
                )
                or None
            ),
            150,
            "every node to renew its certificate",
            every=0.5,
        )
        count = handshakes.done
        wait_for(lambda: handshakes.done > count + 50, 60, "new connections after renewal")
    finally:
        log = traffic.stop()
        written = acked.stop()
        handshakes.halt()
    assert not log.failed and log.writes > 100, log.failed[:5]
    assert written.failed_commands == 0 and written.failed_connects == 0, written
    assert not handshakes.failed, handshakes.failed[:5]
    # Served live: the same processes, presenting new certificates to new connections.
    assert {name: cluster.node_pid(name) for name in members} == pids
    now = {m["name"]: serial_served(cluster, m["ip"]) for m in cluster.members()}
    assert all(now[name] != first[name] for name in members), (first, now)
    with cluster.cluster_client() as client:
        assert all(client.get(k) == v for k, v in written.acknowledged.items())
