"""A cluster's own certificate authority, and the certificates it issues (Python's
``cryptography``), kept as PEM files.

Each node gets a certificate whose subject alternative names are its current IP address (and
its name): clients that check the host name (redis-py does by default) connect by IP. A node that
moves to another address gets a new certificate before it starts there; one in the last third of
its life (at most 30 days before its end) is issued again too, and a running server loads it
with CONFIG SET. Certificates live a year; ``$REDKUBE_CERT_LIFETIME_S`` sets another lifetime
(the tests renew under load within seconds). Every certificate serves both ends of a TLS
connection (server and client authentication): nodes present theirs to each other on the
cluster bus and to their master when replicating. Private keys are written 0600.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from redkube.platform.private_files import write_private

CA_LIFETIME = datetime.timedelta(days=3650)
LIFETIME = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)  # at most; a shorter life renews in its last third
# Clocks of the machines a certificate is checked on may lag a little behind the issuer's.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


class Authority:
    """The CA under ``directory`` (``ca.crt``, ``ca.key``), created on first use."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key_path(self) -> Path:
        return self.directory / "ca.key"

    def ensure(self) -> None:
        """Create the CA unless it exists (both files)."""
        if self.cert_path.exists() and self.key_path.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} redkube CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_key(self.key_path, key)
        _write_public(self.cert_path, cert)

    def issue(self, pair: KeyPair, name: str, ips: tuple[str, ...] = ()) -> bool:
        """A certificate for ``name`` (and ``ips``) at ``pair``, unless the one there already
        names them, comes from this CA, matches its key and is not near its end; whether one
        was issued. One issuer at a time per CA (a node starting while its certificate is
        renewed; another redkube process), so a key and its certificate are never mixed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.ensure()
            if _current(pair, self.cert_path, name, ips):
                return False
            self._sign(pair, name, ips)
            return True

    def _sign(self, pair: KeyPair, name: str, ips: tuple[str, ...]) -> None:
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(name)]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + lifetime())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        pair.cert.parent.mkdir(parents=True, exist_ok=True)
        _write_key(pair.key, key)
        _write_public(pair.cert, cert)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def lifetime() -> datetime.timedelta:
    """How long a certificate issued now lives."""
    seconds = os.environ.get("REDKUBE_CERT_LIFETIME_S")
    return datetime.timedelta(seconds=float(seconds)) if seconds else LIFETIME


def renew_before(life: datetime.timedelta) -> datetime.timedelta:
    """How long before its end a certificate of that life is issued again."""
    return min(RENEW_BEFORE, life / 3)


def _current(pair: KeyPair, ca_path: Path, name: str, ips: tuple[str, ...]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        if not pair.key.exists():
            return False
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    has = set(names.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }
    life = cert.not_valid_after_utc - cert.not_valid_before_utc - BACKDATE
    fresh = cert.not_valid_after_utc - _now() > renew_before(life)
    return fresh and has == {name, *ips} and _matches(pair.key, cert)


def _matches(key_path: Path, cert: x509.Certificate) -> bool:
    """Whether the key is the certificate's (a crash between writing the two leaves them
    apart: then both are issued again)."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return key.public_key().public_bytes(encoding, public) == cert.public_key().public_bytes(
        encoding, public
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, unencrypted, readable by its owner only (write_private)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, data)


def _write_public(path: Path, cert: x509.Certificate) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    temporary.replace(path)
