"""The control plane's PKI, made with the `openssl` command-line tool.

One CA signs everything: the apiserver's serving certificate, the serving certificates of
the controller-manager and the scheduler, and the client certificates each component (and
the admin and the node agent) uses to talk to the apiserver, and the node agent's kubelet API
serving certificate. The service-account key pair is a plain RSA key.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVICE_IP = "10.0.0.1"
"""The first address of --service-cluster-ip-range: the `kubernetes` Service's ClusterIP."""

APISERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1", SERVICE_IP)
DAYS = "3650"


class CertificateError(RuntimeError):
    """`openssl` is missing or one of its commands failed."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    """Every file of the PKI; all certificates are signed by `ca`."""

    ca: KeyPair
    apiserver: KeyPair
    kubelet_client: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    controller_manager_serving: KeyPair
    scheduler_serving: KeyPair
    service_account_key: Path
    service_account_pub: Path


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise CertificateError(
            "the `openssl` command is not installed (Debian: apt-get install openssl)"
        )
    return path


def _run(*args: str) -> None:
    done = subprocess.run(
        [openssl(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise CertificateError(f"openssl {' '.join(args)} failed:\n{done.stderr.strip()}")


def _subject(cn: str, o: str | None) -> str:
    return (f"/O={o}" if o else "") + f"/CN={cn}"


def _new_key(key: Path) -> None:
    """An ECDSA P-256 key: quick to make, and every component accepts it."""
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    key.chmod(0o600)


def _make_ca(directory: Path) -> KeyPair:
    pair = KeyPair(directory / "ca.crt", directory / "ca.key")
    config = directory / "ca.cnf"
    config.write_text(
        "[req]\n"
        "distinguished_name = dn\n"
        "x509_extensions = v3\n"
        "prompt = no\n"
        "[dn]\n"
        "CN = redkube-testbed-ca\n"
        "[v3]\n"
        "basicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n"
        "subjectKeyIdentifier = hash\n"
    )
    _new_key(pair.key)
    _run(
        "req", "-x509", "-new", "-config", str(config), "-key", str(pair.key),
        "-days", DAYS, "-sha256", "-out", str(pair.cert),
    )  # fmt: skip
    return pair


def issue(
    directory: Path,
    ca: KeyPair,
    name: str,
    cn: str,
    *,
    o: str | None = None,
    client: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    extfile = directory / f"{name}.ext"
    sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    lines = [
        "[v3]",
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature, keyEncipherment",
        f"extendedKeyUsage = {'clientAuth' if client else 'serverAuth'}",
        "authorityKeyIdentifier = keyid",
    ]
    if sans:
        lines.append(f"subjectAltName = {', '.join(sans)}")
    extfile.write_text("\n".join(lines) + "\n")
    _new_key(pair.key)
    _run("req", "-new", "-key", str(pair.key), "-subj", _subject(cn, o), "-out", str(csr))
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-sha256",
        "-extfile", str(extfile), "-extensions", "v3", "-out", str(pair.cert),
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()
    return pair


def generate(directory: Path, apiserver_ips: tuple[str, ...] = ()) -> Certificates:
    """Make the whole PKI in `directory` (created if missing).

    `apiserver_ips` more addresses the apiserver serves on (besides loopback and its Service's).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory)
    serving_ips = ("127.0.0.1",)
    sa_key = directory / "service-account.key"
    sa_pub = directory / "service-account.pub"
    _run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key))
    sa_key.chmod(0o600)
    _run("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    return Certificates(
        ca=ca,
        apiserver=issue(
            directory,
            ca,
            "apiserver",
            "kube-apiserver",
            dns=APISERVER_NAMES,
            ips=(*APISERVER_IPS, *apiserver_ips),
        ),
        kubelet_client=issue(
            directory,
            ca,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            o="system:masters",
            client=True,
        ),
        admin=issue(directory, ca, "admin", "admin", o="system:masters", client=True),
        controller_manager=issue(
            directory, ca, "controller-manager", "system:kube-controller-manager", client=True
        ),
        scheduler=issue(directory, ca, "scheduler", "system:kube-scheduler", client=True),
        controller_manager_serving=issue(
            directory,
            ca,
            "controller-manager-serving",
            "kube-controller-manager",
            dns=("localhost",),
            ips=serving_ips,
        ),
        scheduler_serving=issue(
            directory,
            ca,
            "scheduler-serving",
            "kube-scheduler",
            dns=("localhost",),
            ips=serving_ips,
        ),
        service_account_key=sa_key,
        service_account_pub=sa_pub,
    )
