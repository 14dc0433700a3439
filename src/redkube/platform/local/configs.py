"""redis.conf for one local node, and the revision a node's process is defined by."""

from __future__ import annotations

import hashlib
from pathlib import Path

from redkube.model.addresses import Address
from redkube.model.live_settings import is_live
from redkube.model.settings import cluster_settings, quoted, render
from redkube.model.specs import ClusterSpec


def render_config(spec: ClusterSpec, address: Address, data_dir: Path, password: str) -> str:
    settings = [
        ("bind", address.host),
        ("port", str(address.port)),
        # Without these, peers learn every node as 127.0.0.1 and the cluster never forms.
        ("bind-source-addr", address.host),
        ("cluster-announce-ip", address.host),
        *cluster_settings(spec),
        # The user's settings (`redkube up --config`), before what redkube must decide itself.
        *spec.config,
        ("dir", str(data_dir)),
        ("requirepass", quoted(password)),
        ("masterauth", quoted(password)),
    ]
    return render(settings)


def revision(spec: ClusterSpec, server: str) -> str:
    """What a node's process is defined by, as a short hash: the server binary and every setting
    a running server cannot take by CONFIG SET. Nodes started on another revision are restarted
    (a rolling update); live settings reach them without one."""
    restart_settings = [(k, v) for k, v in spec.config if not is_live(k)]
    text = render([("server", server), *cluster_settings(spec), *restart_settings])
    return hashlib.sha256(text.encode()).hexdigest()[:10]
