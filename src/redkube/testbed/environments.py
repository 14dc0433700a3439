"""A container's environment and its `$(VAR)` expansion, as the kubelet computes them."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

from redkube.testbed.apiclient import JSON, ApiClient, ApiError

Fetch = Callable[[str, str], JSON | None]
"""(kind, name) -> the ConfigMap or Secret in the Pod's namespace, or None if missing."""


class ConfigError(LookupError):
    """A referenced ConfigMap, Secret or key is missing: CreateContainerConfigError."""


def fetcher(api: ApiClient, namespace: str) -> Fetch:
    def fetch(kind: str, name: str) -> JSON | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        try:
            return api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as error:
            if error.not_found:
                return None
            raise

    return fetch


def object_data(obj: JSON) -> dict[str, bytes]:
    """A ConfigMap's or Secret's data as bytes (Secret data is base64 in the API)."""
    if obj.get("kind") == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` -> its value when VAR is defined (else left as is); `$$` -> `$`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(substitute, text)


def field_value(pod: JSON, path: str) -> str:
    """The downward API's fieldRef.fieldPath."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise ConfigError(f"unsupported fieldPath {path!r}")
    return str(simple[path] or "")


def _key_ref(fetch: Fetch, kind: str, ref: JSON) -> str | None:
    obj = fetch(kind, ref["name"])
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    data = object_data(obj)
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]].decode(errors="replace")


def container_env(
    pod: JSON, container: JSON, fetch: Fetch, base: Mapping[str, str]
) -> dict[str, str]:
    """`base` (PATH and the like), then envFrom, then env, in the kubelet's order."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            obj = fetch(kind, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
            for name, raw in object_data(obj).items():
                env[prefix + name] = raw.decode(errors="replace")
    for var in container.get("env") or []:
        value: str | None
        source = var.get("valueFrom")
        if source is None:
            value = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source:
            value = _key_ref(fetch, "Secret", source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = _key_ref(fetch, "ConfigMap", source["configMapKeyRef"])
        elif "resourceFieldRef" in source:
            resource = source["resourceFieldRef"]["resource"]
            section, _, name = resource.partition(".")
            value = str(((container.get("resources") or {}).get(section) or {}).get(name, "0"))
        else:
            raise ConfigError(f"unsupported valueFrom for {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return env
