"""A real S3-compatible server for the backup tests: the Versity gateway, built from its Go
module by scripts/build-versitygw.sh (`make s3-binary`), its posix backend in a directory of
the test's (a bucket is a directory there, an object a file)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.operator.conftest import free_port

VERSION = "v1.8.0"  # scripts/build-versitygw.sh
ACCESS, SECRET = "redkube-test", "not-a-real-secret-0123456789"
BUCKET = "backups"


@dataclass
class S3Server:
    url: str
    root: Path  # the posix backend's directory: a bucket is a directory in it

    def env(self, access: str = ACCESS, secret: str = SECRET) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET, region_name="us-east-1",
        )  # fmt: skip


def versitygw() -> Path:
    cache = os.environ.get("REDKUBE_BIN_CACHE") or str(Path.home() / ".cache" / "redkube" / "bin")
    found = Path(cache) / f"versitygw-{VERSION}" / "versitygw"
    if not found.is_file():
        pytest.fail(f"{found} missing: run scripts/build-versitygw.sh (make s3-binary)")
    return found


@contextlib.contextmanager
def running_s3(folder: Path, host: str = "127.0.0.1") -> Iterator[S3Server]:
    """The Versity gateway on a free port of ``host``, its buckets under ``folder``/s3, with the
    bucket BUCKET; stopped (by its process) on leaving."""
    root = folder / "s3"
    root.mkdir()
    port = free_port()
    log = (folder / "versitygw.log").open("w")
    process = subprocess.Popen(
        [str(versitygw()), "--access", ACCESS, "--secret", SECRET,
         "--port", f"{host}:{port}", "posix", str(root)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = S3Server(f"http://{host}:{port}", root)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(server.url, timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (an anonymous request is refused)
            except OSError:
                assert process.poll() is None, (folder / "versitygw.log").read_text()
                assert time.monotonic() < deadline, "versitygw did not answer in 60 s"
                time.sleep(0.1)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with running_s3(tmp_path) as server:
        yield server
