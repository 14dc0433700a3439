"""The cluster's own CA (redkube.platform.certificates), checked with OpenSSL through Python's
ssl module and with `openssl verify`: what it issues chains to it, names what it should, serves
both ends of a connection, and is issued again only when it must be."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from redkube.platform.certificates import Authority, KeyPair


def names(pair: KeyPair) -> set[str]:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    found = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(found.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in found.get_values_for_type(x509.IPAddress)
    }


def test_a_node_certificate_chains_to_the_ca_and_names_the_node_and_its_address(
    tmp_path: Path,
) -> None:
    authority = Authority(tmp_path / "ca", "demo")
    pair = KeyPair(tmp_path / "node" / "tls.crt", tmp_path / "node" / "tls.key")
    assert authority.issue(pair, "demo-0-0", ("127.0.100.1",))
    assert names(pair) == {"demo-0-0", "127.0.100.1"}
    assert authority.key_path.stat().st_mode & 0o777 == 0o600
    assert pair.key.stat().st_mode & 0o777 == 0o600
    openssl = shutil.which("openssl")
    assert openssl is not None
    for purpose in ("sslserver", "sslclient"):  # it serves both ends of a connection
        verified = subprocess.run(
            [openssl, "verify", "-CAfile", str(authority.cert_path), "-purpose", purpose,
             str(pair.cert)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, purpose + verified.stdout + verified.stderr
    # Python's own TLS stack accepts the pair and the CA, and checks the IP against the name.
    context = ssl.create_default_context(cafile=str(authority.cert_path))
    context.load_cert_chain(str(pair.cert), str(pair.key))
    ip = ipaddress.ip_address("127.0.100.1")
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ip in san.get_values_for_type(x509.IPAddress)


def test_a_certificate_is_issued_again_only_for_a_new_address_a_new_ca_or_near_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = Authority(tmp_path / "ca", "demo")
    pair = KeyPair(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert authority.issue(pair, "demo-0-0", ("127.0.100.1",))
    first = pair.cert.read_bytes()
    assert not authority.issue(pair, "demo-0-0", ("127.0.100.1",))
    assert pair.cert.read_bytes() == first

    assert authority.issue(pair, "demo-0-0", ("127.0.100.9",))  # the node moved
    assert names(pair) == {"demo-0-0", "127.0.100.9"}

    other = Authority(tmp_path / "other-ca", "demo")
    assert other.issue(pair, "demo-0-0", ("127.0.100.9",))  # signed by another CA: replaced
    assert not other.issue(pair, "demo-0-0", ("127.0.100.9",))

    # In the last third of its life: issued again (a life of 3 s, for the test).
    monkeypatch.setenv("REDKUBE_CERT_LIFETIME_S", "3")
    assert not other.issue(pair, "demo-0-0", ("127.0.100.9",))  # issued for a year: current
    short = KeyPair(tmp_path / "short.crt", tmp_path / "short.key")
    assert other.issue(short, "demo-0-1")
    assert not other.issue(short, "demo-0-1")
    time.sleep(2.2)
    assert other.issue(short, "demo-0-1")


def test_a_key_that_is_not_the_certificates_is_issued_again(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "ca", "demo")
    pair = KeyPair(tmp_path / "tls.crt", tmp_path / "tls.key")
    stray = KeyPair(tmp_path / "stray.crt", tmp_path / "stray.key")
    authority.issue(pair, "demo-0-0")
    authority.issue(stray, "demo-0-0")
    pair.key.write_bytes(stray.key.read_bytes())  # as a crash between the two writes leaves it
    assert authority.issue(pair, "demo-0-0")
    context = ssl.create_default_context(cafile=str(authority.cert_path))
    context.load_cert_chain(str(pair.cert), str(pair.key))  # refused if they did not match
