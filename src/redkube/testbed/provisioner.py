"""A dynamic PersistentVolume provisioner for the test bed: directories on this machine are disks.

Like rancher's local-path-provisioner, as an external provisioner for the controller-manager's
PV controller:

    provisioner = Provisioner(api, Path("/var/lib/testbed/volumes"))
    provisioner.ensure_storage_class()      # default StorageClass `standard`
    provisioner.run(stop)                   # until `stop` is set

How a claim gets a volume (pkg/controller/volume/persistentvolume, scheduler volumebinding):

1. A PVC of class `standard` (volumeBindingMode WaitForFirstConsumer) stays Pending until the
   scheduler picks a node for a Pod using it: the scheduler's volumebinding plugin writes
   `volume.kubernetes.io/selected-node` on the PVC, then waits in PreBind for the PVC to bind.
2. The PV controller sees the selected node, finds no existing PV that fits, and since the
   class's provisioner is not an in-tree plugin (not `kubernetes.io/...`) it only annotates the
   PVC `volume.kubernetes.io/storage-provisioner: <class provisioner>` and leaves the rest to us.
3. `sync_claim` creates PV `pvc-<claim uid>`: a `local` volume at `<root>/pvc-<uid>` (created,
   mode 0777) with node affinity `kubernetes.io/hostname In [<the node's hostname label>]`, and a
   `claimRef` naming the claim (uid included): the PV is pre-bound to it.
4. The PV controller binds the pre-bound PV and the claim; the scheduler binds the Pod.

When the claim is deleted the PV controller marks the PV `Released`; for an external
provisioner it does nothing more, so `sync_volume` removes the directory and deletes the PV
(reclaim policy Delete; with Retain both stay).

Immediate binding mode (a StorageClass someone else creates with our provisioner): there is no
selected node, and a `local` PV must have node affinity (API validation), so the PV is a
`hostPath` volume at the same place with no node affinity. Every test-bed node is this machine,
so that directory is reachable from any node. A claim that does carry a selected node gets a
`local` PV as above.

Several provisioners may watch one cluster (a test's and a node agent's, each with its own
root). Each claims a PVC before provisioning it by writing its root into the PVC annotation
OWNER_ANNOTATION (a merge patch with the PVC's resourceVersion, so only one wins) and leaves
alone PVCs and PVs owned by another root. Write that annotation at creation time to choose the
provisioner. A provisioner deletes only directories that are direct children of its own root.

It logs one INFO line per action (and WARNINGs) on the logger `redkube.testbed.provisioner`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from redkube.testbed.apiclient import JSON, ApiClient, ApiError

PROVISIONER = "redkube.io/testbed-local-path"
STORAGE_CLASS = "standard"

OWNER_ANNOTATION = "redkube.io/testbed-local-path-root"
"""On PVCs and PVs: the root directory of the provisioner that provisions (provisioned) it."""

ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
HOSTNAME_LABEL = "kubernetes.io/hostname"

CLAIMS = "/api/v1/persistentvolumeclaims"
VOLUMES = "/api/v1/persistentvolumes"
STORAGE_CLASSES = "/apis/storage.k8s.io/v1/storageclasses"

WATCH_SECONDS = 5
"""Each watch ends after this long, so `run` returns within about this long of `stop`."""
RESYNC_SECONDS = 30.0
"""Relist everything this often (level-triggered: retries whatever failed or was missed)."""
RETRY_SECONDS = 2.0
"""After one object failed to sync, relist this soon."""
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
JOIN_SECONDS = WATCH_SECONDS + 70.0
"""How long `run` waits for its watchers after `stop` (a request may take REQUEST_TIMEOUT)."""

VOLUME_MODE = 0o777
"""Like local-path-provisioner: any container user may write to its volume."""


log = logging.getLogger("redkube.testbed.provisioner")
"""One INFO line per action, WARNING for trouble (the node agent logs INFO to stderr)."""


def _close(events: Iterator[tuple[str, JSON]]) -> None:
    close = getattr(events, "close", None)
    if callable(close):
        close()  # a generator: closes the watch connection now


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _key(obj: JSON) -> str:
    meta = _dict(obj.get("metadata"))
    namespace = meta.get("namespace")
    name = str(meta.get("name", "?"))
    return f"{namespace}/{name}" if namespace else name


class Provisioner:
    """Provisions PVs for claims of our StorageClass(es); deletes released ones."""

    def __init__(self, api: ApiClient, root: Path) -> None:
        self.api = api
        self.root = Path(os.path.realpath(root))
        self.identity = str(self.root)
        self._said: set[str] = set()
        self._said_lock = threading.Lock()

    # --- StorageClass ------------------------------------------------------------------------

    def ensure_storage_class(self) -> None:
        """Create the default StorageClass `standard` unless a class of that name exists."""
        body: JSON = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {ANN_DEFAULT_CLASS: "true"}},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        try:
            self.api.create(STORAGE_CLASSES, body)
        except ApiError as error:
            if not error.conflict:
                raise
            existing = self.api.get(f"{STORAGE_CLASSES}/{STORAGE_CLASS}")
            if existing.get("provisioner") != PROVISIONER:
                log.warning(
                    f"StorageClass {STORAGE_CLASS} exists with provisioner "
                    f"{existing.get('provisioner')!r}, not {PROVISIONER}: leaving it"
                )
            return
        log.info(f"created default StorageClass {STORAGE_CLASS} (provisioner {PROVISIONER})")

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch claims and volumes (one thread each) until `stop` is set."""
        watchers = [
            threading.Thread(
                target=self._watch,
                args=(what, path, sync, stop),
                name=f"provisioner-{what}",
                daemon=True,
            )
            for what, path, sync in (
                ("claims", CLAIMS, self.sync_claim),
                ("volumes", VOLUMES, self.sync_volume),
            )
        ]
        for watcher in watchers:
            watcher.start()
        log.info(
            f"watching PersistentVolumeClaims and PersistentVolumes; volumes go in {self.root}"
        )
        deadline = None
        for watcher in watchers:
            while watcher.is_alive():
                if stop.is_set() and deadline is None:
                    deadline = time.monotonic() + JOIN_SECONDS
                if deadline is not None and time.monotonic() >= deadline:
                    log.warning(f"{watcher.name} did not stop within {JOIN_SECONDS:g}s; leaving it")
                    break
                watcher.join(timeout=0.5)
        log.info("stopped")

    def _watch(
        self, what: str, path: str, sync: Callable[[JSON], None], stop: threading.Event
    ) -> None:
        """List, sync every object, then watch from the list's resourceVersion; repeat."""
        version = ""
        relist_at = 0.0
        backoff = BACKOFF_INITIAL
        while not stop.is_set():
            try:
                if not version or time.monotonic() >= relist_at:
                    listing = self.api.get(path)
                    version = str(_dict(listing.get("metadata")).get("resourceVersion", ""))
                    relist_at = time.monotonic() + RESYNC_SECONDS
                    for item in listing.get("items") or []:
                        if stop.is_set():
                            return
                        if not self._sync_one(what, sync, item):
                            relist_at = min(relist_at, time.monotonic() + RETRY_SECONDS)
                    if not version:
                        raise ApiError(0, "NoResourceVersion", f"list of {what} had none")
                seconds = max(1, min(WATCH_SECONDS, math.ceil(relist_at - time.monotonic())))
                events = self.api.watch(path, resource_version=version, timeout_seconds=seconds)
                try:
                    for kind, obj in events:
                        if kind == "ERROR":
                            if obj.get("code") != 410:  # 410 Gone: too old, relist quietly
                                log.warning("watch of %s failed: %s", what, obj.get("message"))
                            version = ""
                            break
                        meta = _dict(obj.get("metadata"))
                        version = str(meta.get("resourceVersion") or version)
                        if kind in ("ADDED", "MODIFIED") and not self._sync_one(what, sync, obj):
                            relist_at = min(relist_at, time.monotonic() + RETRY_SECONDS)
                        if stop.is_set():
                            return
                finally:
                    _close(events)
                backoff = BACKOFF_INITIAL
            except ApiError as error:
                version = ""
                if error.status == 410:
                    continue
                log.warning("%s: %s; retrying in %gs", what, error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception:
                version = ""
                log.exception("%s: unexpected error; retrying in %gs", what, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _sync_one(self, what: str, sync: Callable[[JSON], None], obj: JSON) -> bool:
        try:
            sync(obj)
        except (ApiError, OSError) as error:
            log.warning("%s: syncing %s failed: %s", what, _key(obj), error)
            return False
        except Exception:
            log.exception("%s: syncing %s failed", what, _key(obj))
            return False
        return True

    def _warn_once(self, key: str, message: str) -> None:
        """Warn the first time only (for conditions that persist across resyncs)."""
        said = f"{key}\0{message}"
        with self._said_lock:
            if said in self._said:
                return
            self._said.add(said)
        log.warning(message)

    # --- claims ------------------------------------------------------------------------------

    def sync_claim(self, pvc: JSON) -> None:
        """Create the PV for one claim if it is ours to provision and has none yet."""
        meta = _dict(pvc.get("metadata"))
        spec = _dict(pvc.get("spec"))
        annotations = _dict(meta.get("annotations"))
        if meta.get("deletionTimestamp") or spec.get("volumeName"):
            return
        if _dict(pvc.get("status")).get("phase", "Pending") != "Pending":
            return
        wanted_by = (
            annotations.get(ANN_STORAGE_PROVISIONER),
            annotations.get(ANN_BETA_STORAGE_PROVISIONER),
        )
        if PROVISIONER not in wanted_by:
            return
        owner = annotations.get(OWNER_ANNOTATION)
        if owner is not None and owner != self.identity:
            return
        key = _key(pvc)
        uid = str(meta.get("uid", ""))
        if not uid or "namespace" not in meta:
            raise ValueError(f"claim {key} has no uid or namespace")
        class_name = annotations.get(ANN_BETA_STORAGE_CLASS) or spec.get("storageClassName") or ""
        try:
            storage_class = self.api.get(f"{STORAGE_CLASSES}/{class_name}") if class_name else {}
        except ApiError as error:
            if not error.not_found:
                raise
            storage_class = {}
        if not storage_class:
            self._warn_once(uid, f"not provisioning {key}: no StorageClass {class_name!r}")
            return
        if storage_class.get("provisioner") != PROVISIONER:
            return
        node = annotations.get(ANN_SELECTED_NODE)
        if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer" and not node:
            return  # the scheduler has not picked a node yet
        problem = _unsupported(spec)
        if problem:
            self._warn_once(uid, f"not provisioning {key}: {problem}")
            return

        name = f"pvc-{uid}"
        try:
            self.api.get(f"{VOLUMES}/{name}")
            return  # already provisioned
        except ApiError as error:
            if not error.not_found:
                raise
        hostname = None
        if node:
            hostname = self._hostname(node)
            if hostname is None:
                self._warn_once(uid, f"not provisioning {key}: selected node {node} not found")
                return
        if owner is None and not self._claim(pvc):
            return

        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(VOLUME_MODE)
        body = self._volume(pvc, name, path, storage_class, hostname)
        try:
            self.api.create(VOLUMES, body)
        except ApiError as error:
            if error.conflict:
                return  # created meanwhile (by us, for an earlier event): nothing to do
            raise
        where = f"node {node}" if node else "any node (hostPath)"
        log.info(f"provisioned {name} for claim {key} at {path} for {where}")

    def _hostname(self, node: str) -> str | None:
        """The node's `kubernetes.io/hostname` label (the scheduler matches PV affinity on it)."""
        try:
            found = self.api.get(f"/api/v1/nodes/{node}")
        except ApiError as error:
            if error.not_found:
                return None
            raise
        labels = _dict(_dict(found.get("metadata")).get("labels"))
        return str(labels.get(HOSTNAME_LABEL) or node)

    def _claim(self, pvc: JSON) -> bool:
        """Write our root into the claim's owner annotation unless the claim changed meanwhile."""
        meta = _dict(pvc.get("metadata"))
        patch: JSON = {"metadata": {"annotations": {OWNER_ANNOTATION: self.identity}}}
        if meta.get("resourceVersion"):
            patch["metadata"]["resourceVersion"] = meta["resourceVersion"]
        try:
            self.api.patch(
                f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/{meta['name']}",
                patch,
            )
        except ApiError as error:
            if error.conflict or error.not_found:
                return False  # changed or gone: the next event tells what to do
            raise
        return True

    def _volume(
        self, pvc: JSON, name: str, path: Path, storage_class: JSON, hostname: str | None
    ) -> JSON:
        meta = _dict(pvc.get("metadata"))
        spec = _dict(pvc.get("spec"))
        request = _dict(_dict(spec.get("resources")).get("requests"))["storage"]
        volume: JSON = {
            "capacity": {"storage": request},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": _dict(storage_class.get("metadata")).get("name"),
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if storage_class.get("mountOptions"):
            volume["mountOptions"] = list(storage_class["mountOptions"])
        if hostname is None:
            volume["hostPath"] = {"path": str(path), "type": "Directory"}
        else:
            volume["local"] = {"path": str(path)}
            volume["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}
                            ]
                        }
                    ]
                }
            }
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {
                    ANN_PROVISIONED_BY: PROVISIONER,
                    OWNER_ANNOTATION: self.identity,
                },
            },
            "spec": volume,
        }

    # --- volumes -----------------------------------------------------------------------------

    def sync_volume(self, pv: JSON) -> None:
        """Delete one PV and its directory if we provisioned it, it is Released, policy Delete."""
        if not self._releasable(pv):
            return
        name = str(_dict(pv.get("metadata")).get("name", ""))
        path = self._guarded_path(pv)
        if path is None:
            return
        # Act on the current object, not on a possibly stale event (e.g. patched to Retain).
        try:
            current = self.api.get(f"{VOLUMES}/{name}")
        except ApiError as error:
            if error.not_found:
                return
            raise
        if not self._releasable(current) or self._guarded_path(current) != path:
            return
        meta = _dict(current.get("metadata"))
        existed = path.exists()
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and not existed:
            return  # we deleted it; the pv-protection finalizer is still being removed
        if path.is_dir():
            shutil.rmtree(path)
        elif existed:
            path.unlink()
        if not deleting:
            options: JSON = {"preconditions": {"uid": meta["uid"]}} if meta.get("uid") else {}
            try:
                self.api.delete(f"{VOLUMES}/{name}", options or None)
            except ApiError as error:
                if not (error.not_found or error.conflict):
                    raise
        claim = _dict(_dict(current.get("spec")).get("claimRef"))
        what = "removed the directory of" if deleting else "deleted"
        removed = f"removed {path}" if existed else f"{path} was already gone"
        log.info(
            f"{what} released volume {name} (claim {claim.get('namespace')}/"
            f"{claim.get('name')}); {removed}"
        )

    def _releasable(self, pv: JSON) -> bool:
        """Ours (by this root or unowned), Released, reclaim policy Delete."""
        annotations = _dict(_dict(pv.get("metadata")).get("annotations"))
        return (
            annotations.get(ANN_PROVISIONED_BY) == PROVISIONER
            and annotations.get(OWNER_ANNOTATION, self.identity) == self.identity
            and _dict(pv.get("status")).get("phase") == "Released"
            and _dict(pv.get("spec")).get("persistentVolumeReclaimPolicy") == "Delete"
        )

    def _guarded_path(self, pv: JSON) -> Path | None:
        """The PV's directory if it is a direct child of root, reached without symlinks or `..`."""
        spec = _dict(pv.get("spec"))
        raw = _dict(spec.get("local")).get("path") or _dict(spec.get("hostPath")).get("path")
        name = str(_dict(pv.get("metadata")).get("name", "?"))
        if not isinstance(raw, str) or not raw:
            self._warn_once(name, f"not deleting volume {name}: it has no local or hostPath path")
            return None
        real = Path(os.path.realpath(raw))
        lexical = Path(os.path.normpath(raw))
        if not os.path.isabs(raw) or real != lexical or real.parent != self.root:
            self._warn_once(
                name, f"refusing to delete volume {name}: its path {raw} is not a directory "
                f"directly in {self.root}"
            )  # fmt: skip
            return None
        return real


def _unsupported(spec: JSON) -> str | None:
    """Why a claim cannot get a directory volume, if it cannot."""
    if spec.get("volumeMode", "Filesystem") != "Filesystem":
        return f"volumeMode {spec.get('volumeMode')} is not supported (directories only)"
    if spec.get("selector"):
        return "claims with a selector are not supported"
    if spec.get("dataSource") or spec.get("dataSourceRef"):
        return "claims with a data source are not supported"
    if "storage" not in _dict(_dict(spec.get("resources")).get("requests")):
        return "the claim requests no storage"
    return None


__all__ = ["OWNER_ANNOTATION", "PROVISIONER", "STORAGE_CLASS", "Provisioner"]
