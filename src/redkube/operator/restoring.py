"""A RedisCluster's spec.restoreFrom, run beside its reconcile loop: once the cluster is formed
(every slot served), each snapshot of the backup is loaded by a loader Pod (a standalone server
from the cluster's image; the operator serves it the snapshot as its master would) and its keys
are moved by slot into the cluster's masters (MIGRATE, TTLs kept). Any shard count: keys go by
slot, whichever shard held them.

Level-triggered and resumable: `status.restore.snapshotsDone` says which snapshots are in. An
operator restarted during a snapshot moves that snapshot again, keeping each key already there
(it came from that snapshot, or a client wrote it since: never overwritten). The cluster is not
Ready until every snapshot is in, and a restore that
cannot be done (a missing backup, one the image cannot load, a cluster that holds keys already)
is Failed with its reason, never Ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redkube.admin.connections import AdminError, ClientPool, NodeClient
from redkube.admin.observing import observe
from redkube.admin.snapshot_serving import SnapshotServer, load_into
from redkube.admin.snapshots import move_all_keys
from redkube.control.backing_up import fetch_snapshots, read_manifest
from redkube.control.restoring import slot_owners
from redkube.kubernetes.backups import BackupObject, RestoreSource, backup_path, parse_backup
from redkube.kubernetes.building import REDIS_PORT
from redkube.kubernetes.clusters import RedisCluster
from redkube.kubernetes.loaders import build_loader_pod, build_loader_secret, loader_name
from redkube.model.addresses import Address
from redkube.model.backups import BackupError, BackupManifest
from redkube.operator.api_client import api
from redkube.operator.backup_stores import open_backup_store
from redkube.planning.upgrading import version_of_image, version_of_server
from redkube.platform.kubernetes.api import JSON, KubernetesError
from redkube.platform.kubernetes.pods import KubernetesPlatform, pod_problem, ready
from redkube.platform.stores import Store

# Where the operator serves snapshots to loaders: 0 picks a free port (the operator outside the
# cluster, as in the tests); the deployment sets 6390, which its NetworkPolicy opens.
SNAPSHOT_PORT = int(os.environ.get("REDKUBE_SNAPSHOT_PORT") or 0)
LOADER_START_S = 300.0
LOAD_TIMEOUT_S = 1800.0
WAIT_S = 2.0
# One restore at a time per operator: each loads whole snapshots into memory somewhere.
RESTORES = asyncio.Lock()

log = logging.getLogger("redkube.operator")


class RestoreFailed(Exception):
    """The restore cannot be done; the message is for the user."""


def load_refusal(manifest: BackupManifest, image: str) -> str | None:
    """Why the cluster's image cannot load the backup's snapshots; None when it can."""
    source = version_of_server(manifest.server)
    target = version_of_image(image)
    if source is None or target is None or target.reads(source):
        return None
    return (
        f"the backup's snapshots come from {source} (RDB format {source.rdb_version}), which "
        f"{target} cannot load; restore into an image of {source.family} {source.major} or newer"
    )


def address_towards(ip: str) -> str:
    """This process's address on the route to ``ip`` (its Pod IP in a Pod; the host's address
    on the Pod network otherwise): where a loader reaches the operator."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, REDIS_PORT))  # UDP: no packet is sent
        return str(probe.getsockname()[0])


class Restore:
    def __init__(
        self,
        cluster: RedisCluster,
        source: RestoreSource,
        state: JSON,
        platform: KubernetesPlatform,
        pool: ClientPool,
        formed: Callable[[], bool],
        report: Callable[[JSON], None],
    ) -> None:
        self.cluster = cluster
        self.source = source
        self.state: JSON = dict(state)
        self.platform = platform
        self.pool = pool
        self.formed = formed  # the loop's last pass found the cluster Ready
        self._report = report

    def _say(self, **change: object) -> None:
        self.state.update(change)
        self._report(dict(self.state))

    async def run(self) -> None:
        if self.state.get("phase") in ("Complete", "Failed"):
            return
        began = self.state.get("phase") == "Running"
        self.state.setdefault("snapshotsDone", [])
        self.state.setdefault("keys", 0)
        try:
            store, location = await self._open()
            manifest = await asyncio.to_thread(read_manifest, store)
            if (refusal := load_refusal(manifest, self.cluster.image)) is not None:
                raise RestoreFailed(refusal)
            self._say(source=location, snapshots=len(manifest.shards))
            while not self.formed():
                self._say(phase="Pending", message="waiting for the cluster to form")
                await asyncio.sleep(WAIT_S)
            async with RESTORES:
                await self._load_all(store, manifest, began)
            self._say(
                phase="Complete",
                message=f"{self.state['keys']:,} keys from {len(manifest.shards)} snapshots",
            )
            log.info("%s/%s: restore complete", self.cluster.namespace, self.cluster.name)
        except (RestoreFailed, BackupError, AdminError, KubernetesError) as error:
            self._say(phase="Failed", message=str(error)[:1000])
            log.warning("%s/%s: restore failed: %s", self.cluster.namespace, self.cluster.name,
                        error)  # fmt: skip

    async def _open(self) -> tuple[Store, str]:
        if self.source.backup is None:
            assert self.source.target is not None
            # A backup's own folder: the location is the prefix itself.
            where = BackupObject("", self.cluster.namespace, self.cluster.name, self.source.target)
            store = await open_backup_store(where)
            return store, store.location
        path = backup_path(self.cluster.namespace, self.source.backup)
        while True:
            try:
                body = await api().get(path)
            except KubernetesError as error:
                if error.not_found:
                    raise RestoreFailed(f"no RedisClusterBackup {self.source.backup!r}") from error
                raise
            phase = (body.get("status") or {}).get("phase")
            if phase == "Complete":
                backup = parse_backup(body)
                return await open_backup_store(backup), backup.location
            if phase == "Failed":
                raise RestoreFailed(f"backup {self.source.backup} failed; restore another")
            self._say(phase="Pending", message=f"waiting for backup {self.source.backup}")
            await asyncio.sleep(WAIT_S)

    async def _load_all(self, store: Store, manifest: BackupManifest, began: bool) -> None:
        done: list[int] = list(self.state["snapshotsDone"])
        if not began and not done:
            observation = await observe(self.platform.members(), self.pool)
            if any(view.keys for view in observation.views() if view.myself.is_master):
                raise RestoreFailed(
                    "the cluster holds keys already; restoreFrom needs a new, empty cluster"
                )
        self._say(phase="Running", message="loading the backup's snapshots")
        for snapshot in manifest.shards:
            if snapshot.shard in done:
                continue
            label = f"snapshot {len(done) + 1}/{len(manifest.shards)} (shard {snapshot.shard})"
            if began:
                log.info("%s/%s: restore going on after a restart: %s moves again, keys there kept",
                         self.cluster.namespace, self.cluster.name, label)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="redkube-restore-") as work:
                part = dataclasses.replace(manifest, shards=(snapshot,))
                self._say(message=f"{label}: fetching {snapshot.size:,} bytes")
                await asyncio.to_thread(fetch_snapshots, store, part, Path(work), lambda _: None)
                moved = await self._load_one(
                    snapshot.shard, Path(work) / snapshot.file, label, resumed=began
                )
            began = False  # only the snapshot under way when an operator stopped moves again
            done.append(snapshot.shard)
            self._say(snapshotsDone=sorted(done), keys=int(self.state["keys"]) + moved,
                      message=f"{label}: {moved:,} keys in")  # fmt: skip

    async def _load_one(self, index: int, snapshot: Path, label: str, resumed: bool) -> int:
        password = secrets.token_urlsafe(24)
        ip = await self._start_loader(index, password, label)
        server = SnapshotServer(snapshot)
        try:
            await server.start("0.0.0.0", SNAPSHOT_PORT)
            self._say(message=f"{label}: loading it in {loader_name(self.cluster, index)}")
            held = await load_into(
                ip, REDIS_PORT, password, address_towards(ip), server, LOAD_TIMEOUT_S
            )
        finally:
            await server.stop()
        owner_of = await self._owners()
        client = NodeClient(Address(ip, REDIS_PORT), password, timeout=60.0, decode=False)
        done = int(self.state["keys"])
        last = time.monotonic()

        def moved(count: int) -> None:
            nonlocal last
            if time.monotonic() - last >= 1.0 or count == held:
                last = time.monotonic()
                self._say(message=f"{label}: {count:,} of {held:,} keys moved; "
                          f"{done + count:,} in all")  # fmt: skip

        try:
            total = await move_all_keys(client, owner_of, self.pool.migrate_auth(), moved, resumed)
        finally:
            await client.close()
        await self._delete_loader(index)
        return total

    async def _owners(self) -> Callable[[int], Address]:
        return slot_owners(await observe(self.platform.members(), self.pool))

    async def _start_loader(self, index: int, password: str, label: str) -> str:
        """The loader's Pod, new (one left by an earlier attempt is deleted first); its IP once
        it answers."""
        namespace = self.cluster.namespace
        await self._delete_loader(index)
        await api().create(
            f"/api/v1/namespaces/{namespace}/secrets",
            build_loader_secret(self.cluster, index, password),
        )
        await api().create(
            f"/api/v1/namespaces/{namespace}/pods", build_loader_pod(self.cluster, index)
        )
        name = loader_name(self.cluster, index)
        deadline = time.monotonic() + LOADER_START_S
        while True:
            pod = await api().get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            ip = (pod.get("status") or {}).get("podIP")
            if ip and ready(pod):
                return str(ip)
            problem = pod_problem(pod) or f"{name} is {(pod.get('status') or {}).get('phase')}"
            if time.monotonic() > deadline:
                raise RestoreFailed(f"the loader did not start in {LOADER_START_S:.0f}s: {problem}")
            self._say(message=f"{label}: starting its loader: {problem}")
            await asyncio.sleep(WAIT_S)

    async def _delete_loader(self, index: int) -> None:
        """The loader's Pod and Secret gone (waits until the Pod is)."""
        namespace = self.cluster.namespace
        name = loader_name(self.cluster, index)
        for kind in ("pods", "secrets"):
            try:
                await api().delete(f"/api/v1/namespaces/{namespace}/{kind}/{name}",
                                   {"gracePeriodSeconds": 0})  # fmt: skip
            except KubernetesError as error:
                if not error.not_found:
                    raise
        deadline = time.monotonic() + LOADER_START_S
        while time.monotonic() < deadline:
            try:
                await api().get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            except KubernetesError as error:
                if error.not_found:
                    return
                raise
            await asyncio.sleep(0.5)
        raise RestoreFailed(f"the loader {name} was not gone in {LOADER_START_S:.0f}s")
