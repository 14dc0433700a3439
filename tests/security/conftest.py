"""Servers for the TLS tests: they need one built with TLS."""

from __future__ import annotations

import pytest

from tests.conftest import REDIS, server_path
from tests.servers import require, valkey_8_tls, valkey_9_tls


def redis_server() -> str:
    path = server_path(REDIS)
    if path is None:
        pytest.skip("redis-server not installed")
    return path


# Valkey 9 with TLS is built from source by `make builds`: its tests run after the builds.
@pytest.fixture(
    params=["redis-7.0", "valkey-8.0-tls", pytest.param("valkey-9-tls", marks=pytest.mark.built)]
)
def tls_server(request: pytest.FixtureRequest) -> str:
    if request.param == "redis-7.0":
        return redis_server()
    if request.param == "valkey-8.0-tls":
        return require(valkey_8_tls(), "Valkey 8.0.1 built with TLS")
    return require(valkey_9_tls(), "Valkey 9 built with TLS (scripts/build-valkey-tls.sh)")
