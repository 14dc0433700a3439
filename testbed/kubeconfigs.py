"""kubeconfig files for client-certificate users of one cluster."""

from __future__ import annotations

import json
from pathlib import Path

CLUSTER = "redkube-testbed"


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, cert: Path, key: Path, user: str
) -> Path:
    """Write a kubeconfig with one cluster, one user and one (current) context.

    JSON is valid YAML, so no YAML library is needed; file paths are absolute.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {"server": server, "certificate-authority": str(ca.resolve())},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(cert.resolve()),
                    "client-key": str(key.resolve()),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": user,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path
