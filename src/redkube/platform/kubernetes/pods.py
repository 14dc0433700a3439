"""The Kubernetes platform: members are the Pods of a RedisCluster's StatefulSets.

A watch keeps a cache of the cluster's Pods (and the zones of their Nodes), so `members()` is
current and a Pod's death wakes the loop at once (`wait_for_change`). Starting members is the
kubelet's and the StatefulSet controller's job here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence

from redkube.kubernetes.building import (
    CLUSTER_LABEL,
    EXPORTER_CONTAINER,
    REDIS_PORT,
    REVISION_ANNOTATION,
    SERVER_CONTAINER,
    SHARD_LABEL,
    ZONE_LABEL,
)
from redkube.model.addresses import Address
from redkube.model.members import FailureDomain, Member, MemberState, member_name
from redkube.model.specs import ClusterSpec
from redkube.platform.kubernetes.api import JSON, KubernetesApi, KubernetesError

RETRY_S = 1.0
# Container states in which the kubelet retries with a growing pause, as in a crash loop.
BACKING_OFF = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull")
RESTART_CONFIRM_S = 10.0
UNKNOWN = "unknown"
LAST_WORDS_LINES = 2
LAST_WORDS_CHARS = 300
# A Redis/Valkey log line's prefix: `1:M 29 Nov 2026 19:27:58.959 # `.
LOG_PREFIX = re.compile(r"^\d+:[A-Z] \d{1,2} \w{3} \d{4} [\d:.]+ [.\-*#] ")


def pod_state(pod: JSON) -> MemberState:
    """RUNNING when the server container runs and the Pod has an IP; BACKOFF in a crash loop."""
    status = pod.get("status") or {}
    if not status.get("podIP"):
        return MemberState.STOPPED
    # The server's container, whatever the sidecars do (the kubelet lists them by name).
    server = [
        container
        for container in status.get("containerStatuses") or []
        if container.get("name") == SERVER_CONTAINER
    ]
    if not server:
        return MemberState.STOPPED
    state = server[0].get("state") or {}
    if "running" in state:
        return MemberState.RUNNING
    if (state.get("waiting") or {}).get("reason") in BACKING_OFF:
        return MemberState.BACKOFF
    return MemberState.STOPPED


def ready(found: JSON) -> bool:
    """A Pod's or a Node's Ready condition is True (a Node's is Unknown once its kubelet stops
    reporting)."""
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def last_words(message: str) -> str:
    """The end of a container's termination message (its last log lines, with
    FallbackToLogsOnError): the last LAST_WORDS_LINES non-blank lines without Redis' log prefix,
    joined, at most LAST_WORDS_CHARS characters."""
    lines = [LOG_PREFIX.sub("", line).strip() for line in message.splitlines()]
    words = " / ".join([line for line in lines if line][-LAST_WORDS_LINES:])
    if len(words) > LAST_WORDS_CHARS:
        words = "..." + words[-(LAST_WORDS_CHARS - 3) :]
    return words


def pod_problem(pod: JSON) -> str | None:
    """Why a Pod does not run its server, in Kubernetes' own words: unschedulable, an image that
    cannot be pulled, a crash loop (with the last exit code and the server's last words, e.g.
    Redis' own complaint about a config value), a config error; None otherwise."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "NotScheduled"
            return f"{name} {reason}: {condition.get('message', '')}".strip()
    # The server's container first: its problem is the one that matters.
    statuses = status.get("containerStatuses") or []
    for container in sorted(statuses, key=lambda c: c.get("name") != SERVER_CONTAINER):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if not reason or reason == "ContainerCreating":
            continue
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        exited = f" (last exit code {terminated['exitCode']})" if "exitCode" in terminated else ""
        if container.get("name") == EXPORTER_CONTAINER:
            return (
                f"{name}'s metrics sidecar {reason}{exited}: {waiting.get('message', '')}"
                .strip().rstrip(":") + "; the node serves without its metrics"
            )  # fmt: skip
        problem = f"{name} {reason}{exited}: {waiting.get('message', '')}".strip().rstrip(":")
        said = last_words(str(terminated.get("message") or ""))
        return f"{problem}; the server said: {said}" if said else problem
    return None


class KubernetesPlatform:
    starts_members = False  # the kubelet restarts containers, the StatefulSet recreates Pods

    def __init__(
        self, api: KubernetesApi, namespace: str, spec: ClusterSpec, revision: str = ""
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.spec = spec
        # The revision the spec's Pods should run (building.revision); the operator sets it
        # again on every spec change.
        self.target_revision = revision
        self._pods: dict[str, JSON] = {}
        self._statefulsets: dict[str, JSON] = {}
        self._zones: dict[str, str] = {}
        self._lost_nodes: set[str] = set()
        self._changed = asyncio.Event()
        self.synced = asyncio.Event()

    # --- the Platform protocol ----------------------------------------------------------------

    def members(self) -> Sequence[Member]:
        """The spec's members (a missing Pod as stopped), and the Pods of departing shards (a
        scale-in keeps them until they are drained and retired)."""
        found = []
        departing = sorted(
            {s for s in map(self._shard_of, self._pods.values()) if s >= self.spec.shards}
        )
        for shard in [*range(self.spec.shards), *departing]:
            ordinals: Sequence[int] = range(self.spec.members_per_shard)
            if shard >= self.spec.shards:
                ordinals = sorted(
                    int(name.rsplit("-", 1)[1])
                    for name, pod in self._pods.items()
                    if self._shard_of(pod) == shard
                )
            for ordinal in ordinals:
                name = member_name(self.spec.name, shard, ordinal)
                pod = self._pods.get(name)
                if pod is None:
                    found.append(
                        Member(name, shard, ordinal, None, FailureDomain(UNKNOWN, UNKNOWN),
                               MemberState.STOPPED)
                    )  # fmt: skip
                    continue
                ip = (pod.get("status") or {}).get("podIP")
                node = pod["spec"].get("nodeName") or UNKNOWN
                domain = FailureDomain(node, self._zones.get(node, UNKNOWN))
                address = Address(ip, REDIS_PORT) if ip else None
                # A Pod being deleted still runs, but is on its way out.
                terminating = bool(pod["metadata"].get("deletionTimestamp"))
                runs = (pod["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "")
                found.append(
                    Member(name, shard, ordinal, address, domain, pod_state(pod), terminating,
                           revision=runs, target_revision=self._target(shard),
                           host_lost=node in self._lost_nodes)
                )  # fmt: skip
        return found

    def _target(self, shard: int) -> str | None:
        """The revision a shard's Pods should run; None until its StatefulSet (as watched)
        carries it and its controller has seen it, so that a Pod deleted now comes back on it.
        A departing shard's Pods are not rolled: they only wait to be retired."""
        if not self.target_revision or shard >= self.spec.shards:
            return ""
        statefulset = self._statefulsets.get(f"{self.spec.name}-{shard}")
        if statefulset is None:
            return None
        template = statefulset["spec"]["template"]["metadata"].get("annotations") or {}
        observed = (statefulset.get("status") or {}).get("observedGeneration", 0)
        if template.get(REVISION_ANNOTATION) != self.target_revision or observed < int(
            statefulset["metadata"].get("generation", 0)
        ):
            return None
        return self.target_revision

    @staticmethod
    def _shard_of(pod: JSON) -> int:
        shard = (pod["metadata"].get("labels") or {}).get(SHARD_LABEL, "")
        return int(shard) if str(shard).isdigit() else -1

    async def retire(self, names: Sequence[str]) -> None:
        """Delete the StatefulSets and PodDisruptionBudgets of drained departing shards (their
        PVCs go as the StatefulSet's retention policy says)."""
        found = {self._shard_of(self._pods[name]) for name in names if name in self._pods}
        shards = sorted(shard for shard in found if shard >= self.spec.shards)
        base = f"/namespaces/{self.namespace}"
        for shard in shards:
            name = f"{self.spec.name}-{shard}"
            for path in (
                f"/apis/apps/v1{base}/statefulsets/{name}",
                f"/apis/policy/v1{base}/poddisruptionbudgets/{name}",
            ):
                try:
                    await self.api.delete(path, {"propagationPolicy": "Background"})
                except KubernetesError as error:
                    if not error.not_found:
                        raise

    async def restart(self, names: Sequence[str]) -> None:
        """Delete the named Pods (their preStop hooks run; the StatefulSet recreates them on
        its current template), then wait, bounded, until the watch sees each one go or start
        terminating, so the next pass does not delete it again."""
        base = f"/api/v1/namespaces/{self.namespace}/pods"
        uids = {
            name: self._pods[name]["metadata"].get("uid") for name in names if name in self._pods
        }
        for name in uids:
            try:
                await self.api.delete(f"{base}/{name}", {})
            except KubernetesError as error:
                if not error.not_found:
                    raise
        deadline = asyncio.get_running_loop().time() + RESTART_CONFIRM_S
        while asyncio.get_running_loop().time() < deadline:
            pending = [
                name
                for name, uid in uids.items()
                if name in self._pods
                and self._pods[name]["metadata"].get("uid") == uid
                and not self._pods[name]["metadata"].get("deletionTimestamp")
            ]
            if not pending:
                return
            await self.wait_for_change(0.2)

    def pod_problems(self) -> list[str]:
        """What keeps the cluster's Pods from running, for the status message."""
        found = (pod_problem(pod) for _, pod in sorted(self._pods.items()))
        return [problem for problem in found if problem]

    async def start(self, names: Sequence[str]) -> None:
        """The kubelet restarts containers and the StatefulSet controller recreates Pods;
        wait (briefly) for them to do it."""
        await self.wait_for_change(1.0)

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    # --- the watch ----------------------------------------------------------------------------

    async def _node(self, pod: JSON) -> None:
        """Learn a Pod's Node: its zone once, and whether it is Ready again whenever the Pod is
        not Ready (the node controller marks every Pod of a NotReady Node so) or its Node was
        last seen NotReady (the Pods turn Ready again when it is back)."""
        node = pod["spec"].get("nodeName", "")
        if not node or (node in self._zones and ready(pod) and node not in self._lost_nodes):
            return
        try:
            found = await self.api.get(f"/api/v1/nodes/{node}")
        except KubernetesError:
            return
        self._zones[node] = (found["metadata"].get("labels") or {}).get(ZONE_LABEL, UNKNOWN)
        if ready(found):
            self._lost_nodes.discard(node)
        else:
            self._lost_nodes.add(node)

    async def _update(self, kind: str, pod: JSON) -> None:
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            self._pods.pop(name, None)
        else:
            self._pods[name] = pod
            await self._node(pod)
        self._changed.set()

    def _pods_path(self) -> tuple[str, dict[str, str]]:
        return (
            f"/api/v1/namespaces/{self.namespace}/pods",
            {"labelSelector": f"{CLUSTER_LABEL}={self.spec.name}"},
        )

    async def refresh(self) -> str:
        """List the cluster's Pods once, replacing what was known; returns the list's
        resourceVersion (to watch from)."""
        listing = await self.api.get(*self._pods_path())
        self._pods = {}
        for pod in listing.get("items") or []:
            await self._update("ADDED", pod)
        self.synced.set()
        self._changed.set()
        return str(listing["metadata"]["resourceVersion"])

    async def watch(self, stop: asyncio.Event) -> None:
        """List and watch the cluster's Pods and StatefulSets until `stop` is set."""
        await asyncio.gather(self._watch_pods(stop), self._watch_statefulsets(stop))

    async def _watch_statefulsets(self, stop: asyncio.Event) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/statefulsets"
        params = {"labelSelector": f"{CLUSTER_LABEL}={self.spec.name}"}
        while not stop.is_set():
            try:
                listing = await self.api.get(path, params)
                self._statefulsets = {s["metadata"]["name"]: s for s in listing.get("items") or []}
                self._changed.set()
                version = str(listing["metadata"]["resourceVersion"])
                async for kind, obj in self.api.watch(path, version, params):
                    if kind == "ERROR":
                        break
                    if kind == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if kind == "DELETED":
                        self._statefulsets.pop(name, None)
                    else:
                        self._statefulsets[name] = obj
                    self._changed.set()
            except KubernetesError:
                await asyncio.sleep(RETRY_S)

    async def _watch_pods(self, stop: asyncio.Event) -> None:
        path, params = self._pods_path()
        while not stop.is_set():
            try:
                version = await self.refresh()
                async for kind, obj in self.api.watch(path, version, params):
                    if kind == "ERROR":
                        break
                    if kind != "BOOKMARK":
                        await self._update(kind, obj)
            except KubernetesError:
                await asyncio.sleep(RETRY_S)
