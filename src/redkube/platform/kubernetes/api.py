"""The one module that talks to the Kubernetes API (aiohttp; kopf drives the handlers).

Credentials come from $KUBECONFIG (or ~/.kube/config): client certificates or a bearer token,
files or inline data; inside a Pod, from its service account.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

JSON = dict[str, Any]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "redkube"
TIMEOUT = aiohttp.ClientTimeout(total=30)


class KubernetesError(RuntimeError):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class CredentialsError(RuntimeError):
    """No kubeconfig and no service account, or a kubeconfig redkube cannot use."""


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl: ssl.SSLContext
    token: str | None = None
    namespace: str = "default"  # the context's namespace, or the Pod's


def _materialise(entry: Mapping[str, Any], key: str, directory: Path) -> str | None:
    """A kubeconfig `<key>` path, or `<key>-data` written to a private file."""
    if entry.get(key):
        return str(entry[key])
    data = entry.get(f"{key}-data")
    if not data:
        return None
    path = directory / key
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


def default_kubeconfig() -> Path:
    """Where kubectl looks first: $KUBECONFIG, else ~/.kube/config."""
    return Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))


def load_credentials(kubeconfig: Path | None = None) -> Credentials:
    """The current context of a kubeconfig, else the Pod's service account."""
    path = kubeconfig or default_kubeconfig()
    if not path.exists() and (SERVICE_ACCOUNT / "token").exists():
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
        namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip()
        return Credentials(f"https://{host}:{port}", context, token, namespace)
    try:
        return _from_kubeconfig(path)
    except FileNotFoundError as error:
        raise CredentialsError(f"no kubeconfig at {path} (set KUBECONFIG)") from error
    except (OSError, yaml.YAMLError, ssl.SSLError) as error:
        raise CredentialsError(f"cannot use kubeconfig {path}: {error}") from error
    except (KeyError, StopIteration, TypeError, AttributeError) as error:
        raise CredentialsError(
            f"kubeconfig {path} has no complete current context ({type(error).__name__}: {error})"
        ) from error


def _from_kubeconfig(path: Path) -> Credentials:
    config = yaml.safe_load(path.read_text())
    current = config.get("current-context")
    context_entry = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(
        c["cluster"] for c in config["clusters"] if c["name"] == context_entry["cluster"]
    )
    user = next(u["user"] for u in config["users"] if u["name"] == context_entry["user"])
    scratch = Path(tempfile.mkdtemp(prefix="redkube-kubeconfig-"))
    ca = _materialise(cluster, "certificate-authority", scratch)
    context = ssl.create_default_context(cafile=ca)
    cert = _materialise(user, "client-certificate", scratch)
    key = _materialise(user, "client-key", scratch)
    if cert and key:
        context.load_cert_chain(cert, key)
    namespace = str(context_entry.get("namespace") or "default")
    return Credentials(str(cluster["server"]).rstrip("/"), context, user.get("token"), namespace)


class KubernetesApi:
    """JSON calls against one apiserver; one aiohttp session, closed with `close()`."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self.credentials.token:
                headers["Authorization"] = f"Bearer {self.credentials.token}"
            connector = aiohttp.TCPConnector(ssl=self.credentials.ssl)
            self._session = aiohttp.ClientSession(
                self.credentials.server, headers=headers, connector=connector, timeout=TIMEOUT
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with self._client().request(
                method, path, data=data, params=params, headers=headers
            ) as reply:
                text = await reply.text()
                if reply.status >= 400:
                    raise _error(reply.status, text)
                return json.loads(text) if text else {}
        except aiohttp.ClientError as error:
            raise KubernetesError(0, "ConnectionFailed", str(error)) from error

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body)

    async def replace(self, path: str, body: JSON) -> JSON:
        """PUT the whole object; with `metadata.resourceVersion` set, a 409 Conflict means
        someone else wrote it since it was read."""
        return await self.request("PUT", path, body)

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def apply(self, path: str, body: JSON) -> JSON:
        """Server-side apply as field manager `redkube` (taking over conflicting fields)."""
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        return await self.request(
            "PATCH", path, body, params=params, content_type="application/apply-patch+yaml"
        )

    async def delete(self, path: str, body: JSON | None = None) -> JSON:
        return await self.request("DELETE", path, body)

    async def watch(
        self, path: str, resource_version: str, params: Mapping[str, str], timeout: int = 60
    ) -> AsyncIterator[tuple[str, JSON]]:
        """(type, object) events until the server ends the watch."""
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        stream_timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout + 30)
        try:
            async with self._client().get(path, params=query, timeout=stream_timeout) as reply:
                if reply.status >= 400:
                    raise _error(reply.status, await reply.text())
                async for line in reply.content:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event["type"]), event["object"]
        except aiohttp.ClientError as error:
            raise KubernetesError(0, "ConnectionFailed", str(error)) from error


def _error(status: int, text: str) -> KubernetesError:
    try:
        reply = json.loads(text)
    except ValueError:
        return KubernetesError(status, "", text[:300])
    return KubernetesError(status, str(reply.get("reason", "")), str(reply.get("message", "")))


def object_path(obj: Mapping[str, Any]) -> str:
    """The REST path of a namespaced or cluster object built by `redkube.kubernetes`."""
    api_version = str(obj["apiVersion"])
    kind = str(obj["kind"])
    plural = PLURALS[kind]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    middle = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{middle}/{plural}/{obj['metadata']['name']}"


PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "StatefulSet": "statefulsets",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "RedisCluster": "redisclusters",
}
