"""Where backups are kept: a directory, or S3-compatible object storage.

    store = open_store("s3://bucket/some/prefix")   # or a directory path
    store.put("shard-0.rdb", local_file)
    store.write_text("manifest.json", text)         # the manifest, always last

S3 is reached with boto3 and its usual settings: the endpoint from `AWS_ENDPOINT_URL` (any
S3-compatible server), credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or its other
sources, the region from `AWS_REGION`/`AWS_DEFAULT_REGION` (default us-east-1). Large files go up
in parts (boto3's transfer manager), so a snapshot is never held in memory. Every failure is a
BackupError with one line for the user: wrong credentials, a missing bucket, an endpoint that
does not answer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    NoCredentialsError,
)

from redkube.model.backups import BackupError

S3_SCHEME = "s3://"


class Store(Protocol):
    location: str

    def check(self) -> None:
        """That the store can be reached and written to (its bucket exists); BackupError."""

    def size(self, name: str) -> int | None:
        """The object's size; None when there is none."""

    def put(self, name: str, local: Path) -> None:
        """Keep a local file under ``name``, whole or not at all."""

    def fetch(self, name: str, local: Path) -> None:
        """Copy the object ``name`` into the local file."""

    def write_text(self, name: str, text: str) -> None: ...

    def read_text(self, name: str) -> str | None:
        """The object's text; None when there is none."""

    def remove(self, name: str) -> None:
        """The object gone (nothing when there is none)."""

    def names(self) -> list[str]:
        """The objects kept here, by name."""


@dataclass(frozen=True)
class S3Settings:
    """What boto3 would otherwise read from the environment (the operator reads them from the
    backup's spec and Secret). None: boto3's own sources."""

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None


def open_store(location: str, settings: S3Settings | None = None) -> Store:
    """A directory path, or s3://bucket[/prefix]."""
    if location.startswith(S3_SCHEME):
        bucket, _, prefix = location[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise BackupError(f"{location}: name a bucket, as in s3://bucket/prefix")
        return S3Store(bucket, prefix.strip("/"), settings or S3Settings())
    return DirectoryStore(Path(location))


class DirectoryStore:
    """Files in a directory of their owner's only (0700; the files 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)

    def _path(self, name: str) -> Path:
        return self.directory / name

    def check(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise BackupError(f"{self.directory} is not a directory")

    def size(self, name: str) -> int | None:
        path = self._path(name)
        return path.stat().st_size if path.is_file() else None

    def put(self, name: str, local: Path) -> None:
        with self._writing(name) as partial:
            shutil.copyfile(local, partial)

    def fetch(self, name: str, local: Path) -> None:
        shutil.copyfile(self._path(name), local)

    def write_text(self, name: str, text: str) -> None:
        with self._writing(name) as partial:
            partial.write_text(text)

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[Path]:
        """A partial file to write, then renamed to ``name`` (whole or not at all, mode 0600);
        a failure (a full volume) is one line, and leaves no partial file."""
        partial = self._path(f".{name}.partial")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            yield partial
            os.chmod(partial, 0o600)
            os.replace(partial, self._path(name))
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise BackupError(
                f"cannot write {name} to {self.directory}: {error.strerror or error}"
            ) from error

    def read_text(self, name: str) -> str | None:
        path = self._path(name)
        return path.read_text() if path.is_file() else None

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if not p.name.startswith("."))


class S3Store:
    """Objects under s3://bucket/prefix/. An upload is whole or absent (S3 shows an object only
    once its last part is in)."""

    def __init__(self, bucket: str, prefix: str, settings: S3Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"{S3_SCHEME}{bucket}" + (f"/{prefix}" if prefix else "")
        region = (
            settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            region_name=region or "us-east-1",
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=120,
                # Path-style addressing: S3-compatible servers rarely have a DNS name per bucket.
                s3={"addressing_style": "path"},
            ),
        )

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _failed(self, what: str, error: Exception) -> BackupError:
        if isinstance(error, NoCredentialsError):
            why = "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        elif isinstance(error, FlexibleChecksumError):
            why = "it does not match its checksum: the backup is damaged"
        elif isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            why = {
                "NoSuchBucket": f"the bucket {self.bucket} does not exist",
                "InvalidAccessKeyId": "the access key is not known to the server",
                "SignatureDoesNotMatch": "the secret key is wrong",
                "AccessDenied": "access denied",
                "403": "access denied (wrong credentials?)",
                "404": "not found",
            }.get(code, f"{code}: {error.response.get('Error', {}).get('Message', error)}")
        else:
            why = str(error)
        return BackupError(f"{what} {self.location}: {why}")

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                raise BackupError(f"the bucket {self.bucket} does not exist") from error
            raise self._failed("cannot use", error) from error
        except BotoCoreError as error:
            raise self._failed("cannot reach", error) from error

    def size(self, name: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as error:
            if _missing(error):
                return None
            raise self._failed(f"cannot read {name} in", error) from error
        except BotoCoreError as error:
            raise self._failed("cannot reach", error) from error
        return int(head["ContentLength"])

    def put(self, name: str, local: Path) -> None:
        try:
            self.client.upload_file(str(local), self.bucket, self._key(name))
        except (BotoCoreError, ClientError) as error:
            raise self._failed(f"cannot write {name} to", _cause(error)) from error

    def fetch(self, name: str, local: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(name), str(local))
        except (BotoCoreError, ClientError) as error:
            raise self._failed(f"cannot read {name} from", _cause(error)) from error

    def write_text(self, name: str, text: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=text.encode())
        except (BotoCoreError, ClientError) as error:
            raise self._failed(f"cannot write {name} to", error) from error

    def read_text(self, name: str) -> str | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as error:
            if _missing(error):
                return None
            raise self._failed(f"cannot read {name} from", error) from error
        except BotoCoreError as error:
            raise self._failed("cannot reach", error) from error
        body: bytes = reply["Body"].read()
        return body.decode()

    def remove(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (BotoCoreError, ClientError) as error:
            raise self._failed(f"cannot remove {name} from", error) from error

    def names(self) -> list[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        found: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            ):
                found.extend(o["Key"][len(start) :] for o in page.get("Contents") or [])
        except (BotoCoreError, ClientError) as error:
            raise self._failed("cannot list", error) from error
        return sorted(n for n in found if n and "/" not in n)


def _missing(error: ClientError) -> bool:
    """The object is not there (HEAD answers a bare 404, GET NoSuchKey)."""
    return str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey")


def _cause(error: Exception) -> Exception:
    """boto3's transfer manager wraps a ClientError in its own error; the ClientError says why."""
    cause = error.__cause__ or error.__context__
    return cause if isinstance(cause, ClientError) else error
