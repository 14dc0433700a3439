"""redis.conf settings every redkube node runs with, whatever the platform."""

from __future__ import annotations

from redkube.model.specs import ClusterSpec


def cluster_settings(spec: ClusterSpec, aof: bool = True) -> list[tuple[str, str]]:
    """Cluster mode, the failure detector, replication tuning and persistence."""
    settings = [
        ("cluster-enabled", "yes"),
        ("cluster-config-file", "nodes.conf"),
        ("cluster-node-timeout", str(spec.node_timeout_ms)),
        # redkube places replicas itself; Redis must not move them across shards.
        ("cluster-allow-replica-migration", "no"),
        ("daemonize", "no"),
        ("appendonly", "yes" if aof else "no"),
        ("appendfsync", "everysec"),
        ("repl-diskless-sync", "yes"),
        # The default waits 5 s for more replicas before each sync; ours attach all at once.
        ("repl-diskless-sync-delay", "0"),
        # An empty replica loads straight from the socket instead of through a file.
        ("repl-diskless-load", "on-empty-db"),
    ]
    return settings


def tls_settings(
    spec: ClusterSpec, port: int, cert: str, key: str, ca: str
) -> list[tuple[str, str]]:
    """TLS on the client port, for replication and on the cluster bus; no plain TCP port. Each
    node's certificate also serves as its client certificate towards its peers."""
    if not spec.tls:
        return [("port", str(port))]
    return [
        ("port", "0"),
        ("tls-port", str(port)),
        ("tls-cluster", "yes"),
        ("tls-replication", "yes"),
        ("tls-cert-file", quoted(cert)),
        ("tls-key-file", quoted(key)),
        ("tls-ca-cert-file", quoted(ca)),
        ("tls-auth-clients", "yes" if spec.tls_client_certs else "optional"),
    ]


def render(settings: list[tuple[str, str]]) -> str:
    return "".join(f"{key} {value}\n" for key, value in settings)


def quoted(value: str) -> str:
    """A redis.conf string argument (passwords may contain spaces and quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
