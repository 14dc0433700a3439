"""The store a backup is kept in, opened with the credentials of its Secret; and a backup's
objects removed."""

from __future__ import annotations

import asyncio
import base64

from redkube.kubernetes.backups import BackupObject, S3Target
from redkube.model.backups import MANIFEST, BackupError
from redkube.operator.api_client import api
from redkube.platform.kubernetes.api import KubernetesError
from redkube.platform.stores import S3Settings, Store, open_store


async def _credentials(namespace: str, target: S3Target) -> S3Settings:
    path = f"/api/v1/namespaces/{namespace}/secrets/{target.secret}"
    try:
        secret = await api().get(path)
    except KubernetesError as error:
        if error.not_found:
            raise BackupError(f"no Secret {target.secret!r} with the S3 credentials") from error
        raise
    data = secret.get("data") or {}
    values = []
    for key in (target.access_key_key, target.secret_key_key):
        if not data.get(key):
            raise BackupError(f"Secret {target.secret!r} has no {key!r} key")
        values.append(base64.b64decode(data[key]).decode().strip())
    return S3Settings(target.endpoint, target.region, values[0], values[1])


async def open_backup_store(backup: BackupObject) -> Store:
    return open_store(backup.location, await _credentials(backup.namespace, backup.target))


async def remove_objects(store: Store) -> list[str]:
    """Every object of the backup gone; the manifest first, so that what remains meanwhile is
    never taken for a complete backup."""
    names = await asyncio.to_thread(store.names)
    for name in sorted(names, key=lambda n: n != MANIFEST):
        await asyncio.to_thread(store.remove, name)
    return names
