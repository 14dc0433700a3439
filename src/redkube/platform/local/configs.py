"""redis.conf for one local node."""

from __future__ import annotations

from pathlib import Path

from redkube.model.addresses import Address
from redkube.model.specs import ClusterSpec


def render_config(spec: ClusterSpec, address: Address, data_dir: Path, password: str) -> str:
    settings = [
        ("bind", address.host),
        ("port", str(address.port)),
        # Without these, peers learn every node as 127.0.0.1 and the cluster never forms.
        ("bind-source-addr", address.host),
        ("cluster-announce-ip", address.host),
        ("cluster-enabled", "yes"),
        ("cluster-config-file", "nodes.conf"),
        ("cluster-node-timeout", str(spec.node_timeout_ms)),
        # redkube places replicas itself; Redis must not move them across shards.
        ("cluster-allow-replica-migration", "no"),
        ("dir", str(data_dir)),
        ("daemonize", "no"),
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("repl-diskless-sync", "yes"),
        # The default waits 5 s for more replicas before each sync; ours attach all at once.
        ("repl-diskless-sync-delay", "0"),
        # An empty replica loads straight from the socket instead of through a file.
        ("repl-diskless-load", "on-empty-db"),
        ("requirepass", _quoted(password)),
        ("masterauth", _quoted(password)),
    ]
    return "".join(f"{key} {value}\n" for key, value in settings)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
