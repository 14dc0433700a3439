"""redis.conf for one local node, and the revision a node's process is defined by."""

from __future__ import annotations

import hashlib
from pathlib import Path

from redkube.model.addresses import Address
from redkube.model.live_settings import is_live
from redkube.model.settings import cluster_settings, quoted, render, tls_settings
from redkube.model.specs import ClusterSpec
from redkube.platform.certificates import KeyPair
from redkube.platform.local.layout import Credentials


def render_config(
    spec: ClusterSpec,
    address: Address,
    data_dir: Path,
    credentials: Credentials,
    tls: KeyPair,
    ca: Path,
) -> str:
    """``tls`` (the node's certificate) and ``ca`` count only when the spec asks for TLS."""
    settings = [
        ("bind", address.host),
        *tls_settings(spec, address.port, str(tls.cert), str(tls.key), str(ca)),
        # Without these, peers learn every node as 127.0.0.1 and the cluster never forms.
        ("bind-source-addr", address.host),
        ("cluster-announce-ip", address.host),
        *cluster_settings(spec),
        # The user's settings (`redkube up --config`), before what redkube must decide itself.
        *spec.config,
        ("dir", str(data_dir)),
        *auth_settings(credentials),
    ]
    return render(settings)


def auth_settings(credentials: Credentials) -> list[tuple[str, str]]:
    """One password: requirepass. During a rotation the default user takes both, by their
    SHA-256 (as ACL SETUSER gives them to the running nodes)."""
    current = credentials.current
    if len(credentials.accepted) == 1:
        return [("requirepass", quoted(current)), ("masterauth", quoted(current))]
    hashes = " ".join(f"#{hashlib.sha256(p.encode()).hexdigest()}" for p in credentials.accepted)
    return [("user", f"default on {hashes} ~* &* +@all"), ("masterauth", quoted(current))]


def revision(spec: ClusterSpec, server: str) -> str:
    """What a node's process is defined by, as a short hash: the server binary and every setting
    a running server cannot take by CONFIG SET. Nodes started on another revision are restarted
    (a rolling update); live settings reach them without one."""
    restart_settings = [(k, v) for k, v in spec.config if not is_live(k)]
    # Only when on: a cluster without TLS keeps the revision it had before TLS existed.
    tls = [("tls", "on"), ("tls-client-certs", str(spec.tls_client_certs))] if spec.tls else []
    text = render([("server", server), *cluster_settings(spec), *restart_settings, *tls])
    return hashlib.sha256(text.encode()).hexdigest()[:10]
