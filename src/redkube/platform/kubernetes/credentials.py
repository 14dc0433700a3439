"""Who redkube is to the Kubernetes API, the way kubectl finds out.

From $KUBECONFIG (or ~/.kube/config), its current context: client certificates, a bearer token
(inline or `tokenFile`), or an `exec:` credential plugin (how GKE, EKS and AKS authenticate:
gke-gcloud-auth-plugin, `aws eks get-token`, kubelogin). Inside a Pod, its service account.

Tokens change while the operator runs: a projected service-account token is rotated by the
kubelet (about hourly), a plugin's token expires. So a token is never cached for good: a file is
read again after a minute (as client-go does), a plugin runs again shortly before the expiry it
gave, and either is renewed at once when the API answers 401.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import ssl
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE_REREAD_S = 60.0
EXPIRY_MARGIN_S = 10.0  # a plugin runs again this long before its token expires
PLUGIN_TIMEOUT_S = 60.0
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class CredentialsError(RuntimeError):
    """No kubeconfig and no service account, or a kubeconfig redkube cannot use."""


@dataclass(frozen=True)
class Token:
    value: str
    expires: datetime.datetime | None = None  # UTC


class TokenSource(Protocol):
    async def token(self, renew: bool = False) -> Token:
        """The token to send; ``renew``: the API refused the last one (401)."""
        ...


@dataclass
class FixedToken:
    value: str

    async def token(self, renew: bool = False) -> Token:
        return Token(self.value)


@dataclass
class TokenFile:
    """A token in a file that its owner rewrites (a projected service-account token)."""

    path: Path
    _read_at: float = field(default=-1e9, init=False)
    _value: str = field(default="", init=False)

    async def token(self, renew: bool = False) -> Token:
        if renew or time.monotonic() - self._read_at >= TOKEN_FILE_REREAD_S:
            try:
                self._value = self.path.read_text().strip()
            except OSError as error:
                raise CredentialsError(f"cannot read token file {self.path}: {error}") from error
            self._read_at = time.monotonic()
        return Token(self._value)


@dataclass
class ExecPlugin:
    """A kubeconfig `exec:` plugin: a command that prints an ExecCredential."""

    command: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    api_version: str = EXEC_API_VERSIONS[0]
    _cached: Token | None = field(default=None, init=False)
    _lock: asyncio.Lock | None = field(default=None, init=False)

    def _fresh(self) -> bool:
        if self._cached is None:
            return False
        if self._cached.expires is None:
            return True
        left = self._cached.expires - datetime.datetime.now(datetime.UTC)
        return left.total_seconds() > EXPIRY_MARGIN_S

    async def token(self, renew: bool = False) -> Token:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if renew or not self._fresh():
                self._cached = await self._run()
            assert self._cached is not None
            return self._cached

    async def _run(self) -> Token:
        info = {"apiVersion": self.api_version, "kind": "ExecCredential",
                "spec": {"interactive": False}}  # fmt: skip
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            process = await asyncio.create_subprocess_exec(
                self.command, *self.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), PLUGIN_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            raise CredentialsError(f"credential plugin {self.command}: {error}") from error
        if process.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            raise CredentialsError(
                f"credential plugin {self.command} exited with {process.returncode}"
                + (f": {said[-1]}" if said else "")
            )
        return parse_exec_credential(out, self.command)


def parse_exec_credential(output: bytes, command: str) -> Token:
    try:
        reply = json.loads(output)
        status = reply["status"]
    except (ValueError, KeyError, TypeError) as error:
        raise CredentialsError(
            f"credential plugin {command} did not print an ExecCredential ({error})"
        ) from error
    token = status.get("token")
    if not token:
        raise CredentialsError(
            f"credential plugin {command} gave no token (client certificates from a plugin are "
            "not supported)"
        )
    expires = status.get("expirationTimestamp")
    when = None
    if expires:
        try:
            when = datetime.datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError as error:
            raise CredentialsError(
                f"credential plugin {command}: bad expirationTimestamp {expires!r}"
            ) from error
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
    return Token(str(token), when)


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl: ssl.SSLContext
    tokens: TokenSource | None = None
    namespace: str = "default"  # the context's namespace, or the Pod's
    # Files for clients that build their own TLS (kopf).
    ca_path: str | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None


def default_kubeconfig() -> Path:
    """Where kubectl looks first: $KUBECONFIG, else ~/.kube/config."""
    return Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))


def load_credentials(kubeconfig: Path | None = None) -> Credentials:
    """The current context of a kubeconfig, else the Pod's service account."""
    path = kubeconfig or default_kubeconfig()
    if not path.exists() and (SERVICE_ACCOUNT / "token").exists():
        return _in_cluster()
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


def _in_cluster() -> Credentials:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    ca = str(SERVICE_ACCOUNT / "ca.crt")
    namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip()
    return Credentials(
        f"https://{host}:{port}",
        ssl.create_default_context(cafile=ca),
        TokenFile(SERVICE_ACCOUNT / "token"),
        namespace,
        ca_path=ca,
    )


def _materialise(entry: Mapping[str, Any], key: str, directory: Path, base: Path) -> str | None:
    """A kubeconfig `<key>` path (relative to the kubeconfig's folder), or `<key>-data` written
    to a private file."""
    if entry.get(key):
        return str(base / str(entry[key]))
    data = entry.get(f"{key}-data")
    if not data:
        return None
    path = directory / key
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


def _from_kubeconfig(path: Path) -> Credentials:
    config = yaml.safe_load(path.read_text())
    current = config.get("current-context")
    context_entry = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(
        c["cluster"] for c in config["clusters"] if c["name"] == context_entry["cluster"]
    )
    user = next(u["user"] for u in config["users"] if u["name"] == context_entry["user"]) or {}
    base = path.resolve().parent
    scratch = Path(tempfile.mkdtemp(prefix="redkube-kubeconfig-"))
    ca = _materialise(cluster, "certificate-authority", scratch, base)
    context = ssl.create_default_context(cafile=ca)
    cert = _materialise(user, "client-certificate", scratch, base)
    key = _materialise(user, "client-key", scratch, base)
    if cert and key:
        context.load_cert_chain(cert, key)
    namespace = str(context_entry.get("namespace") or "default")
    return Credentials(
        str(cluster["server"]).rstrip("/"),
        context,
        _token_source(user, base),
        namespace,
        ca_path=ca,
        certificate_path=cert if key else None,
        private_key_path=key if cert else None,
    )


def _token_source(user: Mapping[str, Any], base: Path) -> TokenSource | None:
    if user.get("token"):
        return FixedToken(str(user["token"]))
    if user.get("tokenFile"):
        return TokenFile(base / str(user["tokenFile"]))
    plugin = user.get("exec")
    if plugin:
        return _exec_plugin(plugin, base)
    if user.get("auth-provider"):
        name = user["auth-provider"].get("name", "?")
        raise CredentialsError(
            f"the kubeconfig user uses the removed auth-provider {name!r}; use its exec plugin "
            "(e.g. gke-gcloud-auth-plugin, kubelogin)"
        )
    return None


def _exec_plugin(plugin: Mapping[str, Any], base: Path) -> ExecPlugin:
    api_version = str(plugin.get("apiVersion", ""))
    if api_version not in EXEC_API_VERSIONS:
        raise CredentialsError(
            f"credential plugin apiVersion {api_version!r} is not one of "
            f"{', '.join(EXEC_API_VERSIONS)}"
        )
    command = str(plugin["command"])
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)  # as kubectl: relative to the kubeconfig's folder
    env = {str(e["name"]): str(e["value"]) for e in plugin.get("env") or ()}
    args = tuple(str(a) for a in plugin.get("args") or ())
    return ExecPlugin(command, args, env, api_version)
