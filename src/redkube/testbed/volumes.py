"""A Pod's volumes, made into files and directories on this machine.

- emptyDir: a fresh directory under the Pod's directory, removed with the Pod;
- configMap, secret, downwardAPI, projected (including the service-account token the
  ServiceAccount admission plugin adds): files written from the API, rewritten on each
  container start;
- persistentVolumeClaim: the bound PersistentVolume's `local.path` or `hostPath.path`, which
  outlives the Pod;
- hostPath: the path itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from redkube.testbed.apiclient import JSON, ApiClient, ApiError
from redkube.testbed.environments import ConfigError, Fetch, field_value, object_data

DEFAULT_MODE = 0o644
TOKEN_SECONDS = 3600


class VolumeNotReady(RuntimeError):
    """The volume can't be set up yet (unbound claim, missing object): the Pod waits."""


def _write(directory: Path, files: dict[str, bytes], mode: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = directory / relative
        if not path.resolve().is_relative_to(directory.resolve()):
            raise ConfigError(f"volume item path {relative!r} escapes the volume")
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.tmp")
        scratch.write_bytes(content)
        scratch.chmod(mode)
        os.replace(scratch, path)


def _keyed_files(obj: JSON | None, source: JSON, kind: str, name: str) -> dict[str, bytes]:
    if obj is None:
        if source.get("optional"):
            return {}
        raise VolumeNotReady(f'{kind.lower()} "{name}" not found')
    data = object_data(obj)
    items = source.get("items")
    if not items:
        return data
    files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeNotReady(f"key {item['key']} not found in {kind} {name}")
        files[item["path"]] = data[item["key"]]
    return files


def _downward_files(pod: JSON, source: JSON) -> dict[str, bytes]:
    files = {}
    for item in source.get("items") or []:
        if "fieldRef" not in item:
            raise ConfigError(f"unsupported downwardAPI item {item.get('path')!r}")
        files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"]).encode()
    return files


def _token(api: ApiClient, pod: JSON, source: JSON) -> bytes:
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    request: JSON = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": int(source.get("expirationSeconds", TOKEN_SECONDS)),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }
    if source.get("audience"):
        request["spec"]["audiences"] = [source["audience"]]
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
    try:
        reply = api.create(path, request)
    except ApiError as error:
        raise VolumeNotReady(f"service account token: {error.message}") from error
    return str(reply["status"]["token"]).encode()


def _projected_files(api: ApiClient, pod: JSON, fetch: Fetch, spec: JSON) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for source in spec.get("sources") or []:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files[token["path"]] = _token(api, pod, token)
        elif "configMap" in source:
            ref = source["configMap"]
            obj = fetch("ConfigMap", ref["name"])
            files.update(_keyed_files(obj, ref, "ConfigMap", ref["name"]))
        elif "secret" in source:
            ref = source["secret"]
            obj = fetch("Secret", ref["name"])
            files.update(_keyed_files(obj, ref, "Secret", ref["name"]))
        elif "downwardAPI" in source:
            files.update(_downward_files(pod, source["downwardAPI"]))
        else:
            raise ConfigError(f"unsupported projected source {sorted(source)}")
    return files


def _claim_path(api: ApiClient, namespace: str, claim: str) -> Path:
    try:
        pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    except ApiError as error:
        if error.not_found:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found') from error
        raise
    volume_name = pvc["spec"].get("volumeName")
    if not volume_name or (pvc.get("status") or {}).get("phase") != "Bound":
        raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound yet')
    pv = api.get(f"/api/v1/persistentvolumes/{volume_name}")
    source = pv["spec"].get("local") or pv["spec"].get("hostPath")
    if not source:
        raise ConfigError(f"persistentvolume {volume_name} is neither local nor hostPath")
    path = Path(source["path"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def materialise(api: ApiClient, pod: JSON, pod_dir: Path, fetch: Fetch) -> dict[str, Path]:
    """Every volume of `pod` by name -> its file or directory on this machine."""
    paths: dict[str, Path] = {}
    namespace = pod["metadata"]["namespace"]
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        directory = pod_dir / "volumes" / name
        if "emptyDir" in volume:
            directory.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume or "secret" in volume:
            kind, source = (
                ("ConfigMap", volume["configMap"])
                if "configMap" in volume
                else ("Secret", volume["secret"])
            )
            object_name = source.get("name") or source.get("secretName", "")
            files = _keyed_files(fetch(kind, object_name), source, kind, object_name)
            _write(directory, files, int(source.get("defaultMode", DEFAULT_MODE)))
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            mode = int(source.get("defaultMode", DEFAULT_MODE))
            _write(directory, _downward_files(pod, source), mode)
        elif "projected" in volume:
            source = volume["projected"]
            mode = int(source.get("defaultMode", DEFAULT_MODE))
            _write(directory, _projected_files(api, pod, fetch, source), mode)
        elif "persistentVolumeClaim" in volume:
            directory = _claim_path(api, namespace, volume["persistentVolumeClaim"]["claimName"])
        elif "hostPath" in volume:
            directory = Path(volume["hostPath"]["path"])
        else:
            kinds = sorted(set(volume) - {"name"})
            raise ConfigError(f"volume {name!r}: unsupported volume type {kinds}")
        paths[name] = directory
    return paths
