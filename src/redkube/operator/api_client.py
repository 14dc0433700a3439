"""The one Kubernetes API client every handler uses (the entry point shares its own)."""

from __future__ import annotations

from redkube.platform.kubernetes.api import KubernetesApi
from redkube.platform.kubernetes.credentials import load_credentials

_api: KubernetesApi | None = None


def connect(client: KubernetesApi) -> None:
    """Use `client` for every call the handlers make."""
    global _api
    _api = client


def api() -> KubernetesApi:
    global _api
    if _api is None:
        _api = KubernetesApi(load_credentials())
    return _api
