"""`redkube status NAME -n NAMESPACE`: a RedisCluster on Kubernetes, through the kubeconfig.

It reads what the operator wrote (phase, conditions, each shard's master, replicas and slots),
the cluster's Pods (node, IP, readiness, restarts) and its latest Events. It changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from redkube.cli.exits import ExitStatus, UserError
from redkube.kubernetes.building import CLUSTER_LABEL
from redkube.kubernetes.clusters import cluster_path
from redkube.platform.kubernetes.api import JSON, KubernetesApi, KubernetesError
from redkube.platform.kubernetes.credentials import (
    CredentialsError,
    default_kubeconfig,
    load_credentials,
)

EVENTS_SHOWN = 8


def kubeconfig_present() -> bool:
    """Whether a kubeconfig is where kubectl would look first."""
    return default_kubeconfig().exists()


@dataclass(frozen=True)
class Snapshot:
    cluster: JSON
    pods: list[JSON]
    events: list[JSON]


async def _read(api: KubernetesApi, namespace: str, name: str) -> Snapshot:
    try:
        cluster = await api.get(cluster_path(namespace, name))
    except KubernetesError as error:
        if error.not_found:
            raise UserError(f"no RedisCluster {name!r} in namespace {namespace!r}") from error
        raise
    pods = await api.get(
        f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"{CLUSTER_LABEL}={name}"}
    )
    events = await api.get(
        f"/api/v1/namespaces/{namespace}/events",
        {"fieldSelector": f"involvedObject.kind=RedisCluster,involvedObject.name={name}"},
    )
    return Snapshot(cluster, list(pods["items"]), list(events["items"]))


async def _fetch(kubeconfig: Path | None, namespace: str | None, name: str) -> Snapshot:
    try:
        credentials = load_credentials(kubeconfig)
    except CredentialsError as error:
        raise UserError(str(error)) from error
    api = KubernetesApi(credentials)
    try:
        return await _read(api, namespace or credentials.namespace, name)
    except KubernetesError as error:
        raise UserError(f"Kubernetes API {credentials.server}: {error}") from error
    finally:
        await api.close()


def status(args: argparse.Namespace, name: str, out: Console) -> ExitStatus:
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else None
    snapshot = asyncio.run(_fetch(kubeconfig, args.namespace, name))
    print_snapshot(out, snapshot)
    return ExitStatus.SUCCESS


def _ready(pod: JSON) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _restarts(pod: JSON) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount", 0)) for s in statuses)


def _roles(shards: list[Any]) -> dict[str, tuple[int, str]]:
    """Pod name -> (shard, role), as the operator last observed them."""
    roles: dict[str, tuple[int, str]] = {}
    for shard in shards:
        if shard.get("master"):
            roles[shard["master"]] = (int(shard["index"]), "master")
        for replica in shard.get("replicas") or []:
            roles[replica] = (int(shard["index"]), "replica")
    return roles


def print_snapshot(out: Console, snapshot: Snapshot) -> None:
    cluster = snapshot.cluster
    meta, spec = cluster["metadata"], cluster.get("spec") or {}
    current: JSON = cluster.get("status") or {}
    replicas = spec.get("replicasPerShard", 1)
    phase = str(current.get("phase") or "Pending (no status yet)")
    colour = "green" if phase == "Ready" else "red" if phase == "Failed" else "yellow"
    out.print(
        f"[bold]{meta['name']}[/] (namespace {meta['namespace']}): {spec.get('shards')} shards x "
        f"{replicas} {'replica' if replicas == 1 else 'replicas'}, {spec.get('image')} — "
        f"[{colour}]{phase}[/], {current.get('readyNodes', '0/?')} nodes healthy"
    )
    observed = current.get("observedGeneration")
    generation = meta.get("generation")
    if observed != generation:
        out.print(f"  [yellow]spec generation {generation}, status describes {observed}[/]")
    if current.get("message"):
        out.print(f"  {current['message']}")
    if current.get("updatedNodes"):
        update, now = current.get("updateRevision"), current.get("currentRevision")
        others = f" (the others on {now})" if now != update else ""
        out.print(f"  revision {update}: {current['updatedNodes']} nodes updated{others}")
    for condition in current.get("conditions") or []:
        mark = "[green]True [/]" if condition["status"] == "True" else "[dim]False[/]"
        out.print(f"  {condition['type']:<12} {mark} {condition['reason']}")

    shards = current.get("shards") or []
    out.print()
    table = Table(box=None, pad_edge=False)
    for column in ("shard", "master", "replicas", "slots"):
        table.add_column(column, no_wrap=True)
    for shard in shards:
        table.add_row(
            str(shard["index"]),
            shard.get("master") or Text("none", style="red"),
            ", ".join(shard.get("replicas") or []) or "-",
            shard.get("slots") or "-",
        )
    out.print(table if shards else "  no shard observed yet")

    out.print()
    roles = _roles(shards)
    table = Table(box=None, pad_edge=False)
    for column in ("pod", "shard", "role", "node", "ip", "ready", "restarts"):
        table.add_column(column, no_wrap=True)
    for pod in sorted(snapshot.pods, key=lambda p: str(p["metadata"]["name"])):
        pod_name = str(pod["metadata"]["name"])
        shard_index, role = roles.get(pod_name, (None, "-"))
        pod_status = pod.get("status") or {}
        table.add_row(
            pod_name,
            "-" if shard_index is None else str(shard_index),
            role,
            (pod.get("spec") or {}).get("nodeName") or "-",
            pod_status.get("podIP") or "-",
            Text("yes", style="green") if _ready(pod) else Text("no", style="red"),
            str(_restarts(pod)),
        )
    out.print(table if snapshot.pods else "  no Pods")

    recent = sorted(snapshot.events, key=_event_time)[-EVENTS_SHOWN:]
    if recent:
        out.print()
        out.print("[bold]recent events[/]")
        for event in recent:
            out.print(
                f"  {_event_time(event)}  {event.get('reason', '')}  {event.get('message', '')}"
            )


def _event_time(event: JSON) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event["metadata"]["creationTimestamp"]
    )
