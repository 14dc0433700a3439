"""Kubeconfig users as GKE, EKS and in-cluster Pods have them: an `exec:` credential plugin (a real
script here), a token file that its owner rewrites; run again or read again when they go stale or
the API refuses them. (Against a real apiserver: tests/operator/test_exec_credentials.py.)"""

from __future__ import annotations

import asyncio
import datetime
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from redkube.platform.kubernetes.credentials import (
    CredentialsError,
    ExecPlugin,
    TokenFile,
    load_credentials,
)

PLUGIN = """#!{python}
import json, os, sys, datetime
runs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
with open(runs, "a") as out:
    out.write(json.dumps({{"args": sys.argv[1:], "env": os.environ.get("PLUGIN_ENV"),
                          "info": json.loads(os.environ["KUBERNETES_EXEC_INFO"])}}) + "\\n")
count = sum(1 for _ in open(runs))
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={lifetime})
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": "token-%d" % count,
                             "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


def kubeconfig(folder: Path, user: dict[str, Any]) -> Path:
    """A kubeconfig with one context whose user is `user` (the apiserver is never called)."""
    path = folder / "config"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1/"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def plugin(folder: Path, lifetime: int = 3600) -> Path:
    script = folder / "bin" / "get-token"
    script.parent.mkdir(exist_ok=True)
    script.write_text(PLUGIN.format(python=sys.executable, lifetime=lifetime))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def runs(folder: Path) -> list[dict[str, Any]]:
    path = folder / "bin" / "runs"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def exec_user(command: str, **more: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": command,
            "args": ["--cluster", "demo"],
            "env": [{"name": "PLUGIN_ENV", "value": "set"}],
            "interactiveMode": "Never",
            **more,
        }
    }


def test_an_exec_plugin_runs_relative_to_the_kubeconfig_with_its_args_and_env(
    tmp_path: Path,
) -> None:
    plugin(tmp_path)
    credentials = load_credentials(kubeconfig(tmp_path, exec_user("./bin/get-token")))
    assert isinstance(credentials.tokens, ExecPlugin)
    token = asyncio.run(credentials.tokens.token())
    assert token.value == "token-1"
    assert token.expires is not None and token.expires > datetime.datetime.now(datetime.UTC)
    (run,) = runs(tmp_path)
    assert run["args"] == ["--cluster", "demo"] and run["env"] == "set"
    assert run["info"]["kind"] == "ExecCredential" and run["info"]["spec"]["interactive"] is False


def test_a_plugin_token_is_kept_until_near_its_expiry_and_renewed_on_demand(
    tmp_path: Path,
) -> None:
    async def tokens(source: ExecPlugin) -> list[str]:
        first = await source.token()
        second = await source.token()
        renewed = await source.token(renew=True)
        return [first.value, second.value, renewed.value]

    plugin(tmp_path, lifetime=3600)
    lasting = load_credentials(kubeconfig(tmp_path, exec_user(str(tmp_path / "bin/get-token"))))
    assert isinstance(lasting.tokens, ExecPlugin)
    assert asyncio.run(tokens(lasting.tokens)) == ["token-1", "token-1", "token-2"]

    plugin(tmp_path, lifetime=5)  # within the renewal margin: every call runs it again
    short = load_credentials(kubeconfig(tmp_path, exec_user(str(tmp_path / "bin/get-token"))))
    assert isinstance(short.tokens, ExecPlugin)
    assert asyncio.run(tokens(short.tokens)) == ["token-3", "token-4", "token-5"]


def test_a_failing_plugin_is_one_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "fail"
    script.write_text("#!/bin/sh\necho 'error: not logged in; run gcloud auth login' >&2\nexit 3\n")
    script.chmod(0o755)
    credentials = load_credentials(kubeconfig(tmp_path, exec_user(str(script))))
    assert credentials.tokens is not None
    with pytest.raises(CredentialsError, match="exited with 3: error: not logged in"):
        asyncio.run(credentials.tokens.token())


def test_a_plugin_that_prints_no_token_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "certs"
    reply = {"kind": "ExecCredential", "status": {"clientCertificateData": "x"}}
    script.write_text(f"#!/bin/sh\necho '{json.dumps(reply)}'\n")
    script.chmod(0o755)
    credentials = load_credentials(kubeconfig(tmp_path, exec_user(str(script))))
    assert credentials.tokens is not None
    with pytest.raises(CredentialsError, match="gave no token"):
        asyncio.run(credentials.tokens.token())


def test_a_missing_plugin_and_an_unknown_api_version_are_clear(tmp_path: Path) -> None:
    missing = load_credentials(kubeconfig(tmp_path, exec_user(str(tmp_path / "nope"))))
    assert missing.tokens is not None
    with pytest.raises(CredentialsError, match=r"credential plugin .*nope"):
        asyncio.run(missing.tokens.token())
    with pytest.raises(CredentialsError, match="apiVersion 'v0' is not one of"):
        load_credentials(kubeconfig(tmp_path, exec_user("x", apiVersion="v0")))


def test_a_token_file_is_read_again_when_renewed(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    credentials = load_credentials(kubeconfig(tmp_path, {"tokenFile": "token"}))
    assert isinstance(credentials.tokens, TokenFile)

    async def read(source: TokenFile) -> list[str]:
        first = (await source.token()).value
        (tmp_path / "token").write_text("rotated\n")  # the kubelet rotates it
        cached = (await source.token()).value
        renewed = (await source.token(renew=True)).value
        return [first, cached, renewed]

    assert asyncio.run(read(credentials.tokens)) == ["first", "first", "rotated"]


def test_the_removed_auth_provider_says_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="removed auth-provider 'gcp'; use its exec plugin"):
        load_credentials(kubeconfig(tmp_path, {"auth-provider": {"name": "gcp"}}))
