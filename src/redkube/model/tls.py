"""How redkube's own clients reach nodes over TLS."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientTls:
    """PEM files: the CA the nodes' certificates must chain to, and the certificate and key
    redkube presents (nodes that require client certificates check it against their CA)."""

    ca: str
    cert: str
    key: str
