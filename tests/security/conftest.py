"""Servers for the TLS tests: they need one built with TLS."""

from __future__ import annotations

import pytest

from tests.conftest import REDIS, server_path
from tests.servers import require, valkey_8_tls


def redis_server() -> str:
    path = server_path(REDIS)
    if path is None:
        pytest.skip("redis-server not installed")
    return path


@pytest.fixture(params=["redis-7.0", "valkey-8.0-tls"])
def tls_server(request: pytest.FixtureRequest) -> str:
    if request.param == "redis-7.0":
        return redis_server()
    return require(valkey_8_tls(), "Valkey 8.0.1 built with TLS")
