"""A small Kubernetes API client on the stdlib, for the test bed's node agent and provisioner.

JSON in, JSON out; one keep-alive HTTPS connection per thread; watches as iterators.

    api = ApiClient.from_kubeconfig(path)
    node = api.get("/api/v1/nodes/node-1")
    for kind, obj in api.watch("/api/v1/pods", resource_version="123"):
        ...
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0


def timestamp(micro: bool = False) -> str:
    """Now, in the API's time formats (RFC 3339 seconds, or MicroTime for Leases)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class ApiError(RuntimeError):
    """The apiserver answered with an error status (or the connection failed)."""

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


def _error_from(status: int, body: bytes) -> ApiError:
    try:
        reply = json.loads(body)
    except ValueError:
        return ApiError(status, "", body.decode(errors="replace")[:500])
    if not isinstance(reply, dict):
        return ApiError(status, "", str(reply)[:500])
    return ApiError(status, str(reply.get("reason", "")), str(reply.get("message", "")))


class ApiClient:
    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme != "https" or parsed.hostname is None:
            raise ValueError(f"not an https server URL: {server}")
        self.host = parsed.hostname
        self.port = parsed.port or 443
        self.context = ssl.create_default_context(cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiClient:
        """Read a kubeconfig with file paths (as `kubeconfigs.write_kubeconfig` writes it)."""
        config = json.loads(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        return cls(
            cluster["server"],
            Path(cluster["certificate-authority"]),
            Path(user["client-certificate"]),
            Path(user["client-key"]),
        )

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One call; retried once on a dropped keep-alive connection. Raises ApiError."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            connection: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
            if connection is None:
                connection = self._local.conn = self._connection(REQUEST_TIMEOUT)
            try:
                connection.request(method, url, body=payload, headers=headers)
                reply = connection.getresponse()
                data = reply.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._local.conn = None
                if attempt == 2:
                    raise ApiError(0, "ConnectionFailed", str(error)) from error
                continue
            if reply.status >= 400:
                raise _error_from(reply.status, data)
            result = json.loads(data) if data else {}
            return result if isinstance(result, dict) else {"items": result}
        raise AssertionError("unreachable")

    def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON:
        return self.request("GET", path, query=query)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def replace(self, path: str, body: JSON) -> JSON:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def watch(
        self,
        path: str,
        *,
        resource_version: str,
        query: Mapping[str, str] | None = None,
        timeout_seconds: int = 60,
    ) -> Iterator[tuple[str, JSON]]:
        """Yield (type, object) events until the server ends the watch (after ~timeout)."""
        params = dict(query or {})
        params.update(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
        )
        connection = self._connection(timeout_seconds + 30)
        try:
            connection.request(
                "GET",
                path + "?" + urllib.parse.urlencode(params),
                headers={"Accept": "application/json"},
            )
            reply = connection.getresponse()
            if reply.status >= 400:
                raise _error_from(reply.status, reply.read())
            while True:
                line = reply.readline()
                if not line:
                    return
                event = json.loads(line)
                yield str(event["type"]), event["object"]
        except (OSError, http.client.HTTPException) as error:
            raise ApiError(0, "ConnectionFailed", str(error)) from error
        finally:
            connection.close()
