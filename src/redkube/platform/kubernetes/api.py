"""The one module that talks to the Kubernetes API (aiohttp; kopf drives the handlers).

Who it is comes from `credentials` (kubeconfig or service account); a bearer token is asked for
on every call, and renewed once when the API answers 401.

Why not the official client or kubernetes_asyncio: redkube needs a dozen JSON calls, a watch and
server-side apply; kopf already brings aiohttp, and these plain calls keep one HTTP stack.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from redkube.platform.kubernetes.credentials import Credentials, CredentialsError

JSON = dict[str, Any]

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


class KubernetesApi:
    """JSON calls against one apiserver; one aiohttp session, closed with `close()`."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.credentials.ssl)
            self._session = aiohttp.ClientSession(
                self.credentials.server,
                headers={"Accept": "application/json"},
                connector=connector,
                timeout=TIMEOUT,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _authorization(self, renew: bool = False) -> dict[str, str]:
        if self.credentials.tokens is None:
            return {}
        try:
            token = await self.credentials.tokens.token(renew)
        except CredentialsError as error:
            raise KubernetesError(0, "CredentialsFailed", str(error)) from error
        return {"Authorization": f"Bearer {token.value}"}

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
        renewable = self.credentials.tokens is not None
        for renew in (False, True):
            auth = await self._authorization(renew)
            try:
                async with self._client().request(
                    method, path, data=data, params=params, headers={**headers, **auth}
                ) as reply:
                    text = await reply.text()
                    if reply.status == 401 and renewable and not renew:
                        continue  # an expired or rotated token: renew it once
                    if reply.status >= 400:
                        raise _error(reply.status, text)
                    return json.loads(text) if text else {}
            except aiohttp.ClientError as error:
                raise KubernetesError(0, "ConnectionFailed", str(error)) from error
        raise AssertionError("unreachable: the second try returns or raises")

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
        auth = await self._authorization()
        try:
            async with self._client().get(
                path, params=query, timeout=stream_timeout, headers=auth
            ) as reply:
                if reply.status == 401 and self.credentials.tokens is not None:
                    await self._authorization(renew=True)  # the caller watches again
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
    "NetworkPolicy": "networkpolicies",
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "RedisCluster": "redisclusters",
}
