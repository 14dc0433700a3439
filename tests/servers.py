"""Server binaries beyond the installed ones, for version-upgrade tests.

scripts/fetch-servers.sh (`make server-binaries`, part of `make test`) caches them in
`${REDKUBE_CACHE:-~/.cache/redkube}/servers`; a test asks for one with `require`, which skips
when it is missing, or fails when REDKUBE_REQUIRE_ALL_SERVERS is set (as in CI).
"""

from __future__ import annotations

import os

import pytest

from redkube.testbed.images import cached_valkey


def _executable(path: str) -> str | None:
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def valkey_9_0() -> str | None:
    """The cached Valkey 9.0.0 `valkey-server`; None until scripts/fetch-servers.sh has run."""
    return _executable(str(cached_valkey("9.0.0")))


def require(path: str | None, what: str) -> str:
    """`path`, else skip the test (fail it when REDKUBE_REQUIRE_ALL_SERVERS is set)."""
    if path is not None:
        return path
    reason = f"{what} server binary not installed (run scripts/fetch-servers.sh)"
    if os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
        pytest.fail(reason)
    pytest.skip(reason)
