"""redis.conf for one local node."""

from __future__ import annotations

from pathlib import Path

from redkube.model.addresses import Address
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
        ("dir", str(data_dir)),
        ("requirepass", quoted(password)),
        ("masterauth", quoted(password)),
    ]
    return render(settings)
