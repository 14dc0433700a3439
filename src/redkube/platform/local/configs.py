"""redis.conf for one local node, and the revision a node's process is defined by."""

from __future__ import annotations

import hashlib
from pathlib import Path

from redkube.model.addresses import Address
from redkube.model.live_settings import is_live
from redkube.model.settings import cluster_settings, quoted, render, tls_settings
from redkube.model.specs import ClusterSpec
from redkube.model.users import AclUser, admin_user, password_hash
from redkube.platform.certificates import KeyPair
from redkube.platform.local.layout import Credentials


def render_config(
    spec: ClusterSpec,
    address: Address,
    data_dir: Path,
    credentials: Credentials,
    tls: KeyPair,
    ca: Path,
    users: tuple[AclUser, ...] = (),
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
        *auth_settings(credentials, users),
    ]
    return render(settings)


def auth_settings(
    credentials: Credentials, users: tuple[AclUser, ...] = ()
) -> list[tuple[str, str]]:
    """One password: requirepass. During a rotation the default user takes both, by their
    SHA-256 (as ACL SETUSER gives them to the running nodes). With ACL users, redkube's own
    user too; once redkube has switched to it, the default user is off and replicas
    authenticate as redkube (``control.users``)."""
    current = credentials.current
    masterauth = ("masterauth", quoted(current))
    if credentials.user is not None:
        default = [("user", "default off resetpass"), ("masteruser", credentials.user)]
    elif len(credentials.accepted) == 1:
        default = [("requirepass", quoted(current))]
    else:
        default = [("user", default_user(credentials.accepted).config_line())]
    if not users and credentials.user is None:
        return [*default, masterauth]
    own = [("user", u.config_line()) for u in (admin_user(credentials.accepted), *users)]
    return [*default, *own, masterauth]


def default_user(passwords: tuple[str, ...]) -> AclUser:
    """The default user as redkube gives it every password of the moment: all rights."""
    return AclUser("default", ("~*", "&*", "+@all"), tuple(password_hash(p) for p in passwords))


def revision(spec: ClusterSpec, server: str) -> str:
    """What a node's process is defined by, as a short hash: the server binary and every setting
    a running server cannot take by CONFIG SET. Nodes started on another revision are restarted
    (a rolling update); live settings reach them without one."""
    restart_settings = [(k, v) for k, v in spec.config if not is_live(k)]
    # Only when on: a cluster without TLS keeps the revision it had before TLS existed.
    tls = [("tls", "on"), ("tls-client-certs", str(spec.tls_client_certs))] if spec.tls else []
    text = render([("server", server), *cluster_settings(spec), *restart_settings, *tls])
    return hashlib.sha256(text.encode()).hexdigest()[:10]
