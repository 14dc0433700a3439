"""Prometheus metrics of the loop: what each pass found and what it did, per cluster.

The operator keeps one ``LoopMetrics`` for every RedisCluster it runs (label ``cluster``:
namespace/name); the local supervisor keeps one for its cluster (label: its name). Both serve
them over HTTP (``MetricsServer``). The families, their labels and the alerts built on them are
listed in docs/metrics.md.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
)
from prometheus_client.exposition import generate_latest

from redkube.control.statuses import Phase
from redkube.model.actions import Failover, FailoverMode, Step, Wait
from redkube.model.observations import Observation
from redkube.model.specs import ClusterSpec
from redkube.planning.assessing import Health

CLUSTER = ("cluster",)
# Every phase a status shows: the loop's own, and those a restore puts over it.
PHASES = (*(each.value for each in Phase), "Restoring", "Failed")
ASKED_PASSES = 5
"""A failover the loop asked for is its own when the master changes within this many passes."""
NODE = ("cluster", "node", "shard", "role")


def step_kind(step: Step) -> str:
    """``MoveSlots`` -> ``move_slots``: the label of a step's kind."""
    name = type(step).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def shard_masters(observation: Observation) -> dict[int, str]:
    """Shard -> the member serving its slots as master: of the members that say so of
    themselves, the one with the highest config epoch (an old master that missed its failover
    still believes it serves them, with the older epoch)."""
    found: dict[int, tuple[int, str]] = {}
    for observed in observation.members:
        view = observed.view
        if view is None or not view.myself.is_master or not view.myself.slots:
            continue
        shard, epoch = observed.member.shard, view.myself.config_epoch
        if shard not in found or epoch > found[shard][0]:
            found[shard] = (epoch, observed.member.name)
    return {shard: name for shard, (_, name) in found.items()}


def member_states(observation: Observation) -> dict[str, str]:
    """Member -> `terminating` (its Pod is being deleted), `down` (it did not answer) or `up`."""
    return {
        o.member.name: "terminating"
        if o.member.terminating
        else ("down" if o.view is None else "up")
        for o in observation.members
    }


def failover_reason(step: Failover) -> str:
    """Why the loop failed a master over, as a label: its master was down (an election or a
    takeover), masters were spread over hosts, or a planned hand-over (rolling restart, scale-in,
    a replica out of place)."""
    if step.mode is not FailoverMode.DEFAULT:
        return "master_down"
    if step.reason.startswith("spreading masters"):
        return "spreading"
    return "planned"


class LoopMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # The standard process metrics (CPU, memory, open files), Python's GC and version.
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)

        def gauge(name: str, text: str, labels: Iterable[str] = CLUSTER) -> Gauge:
            return Gauge(name, text, list(labels), registry=self.registry)

        def counter(name: str, text: str, labels: Iterable[str] = CLUSTER) -> Counter:
            return Counter(name, text, list(labels), registry=self.registry)

        self.phase = gauge(
            "redkube_cluster_phase",
            "1 for the cluster's phase, 0 for the others",
            (*CLUSTER, "phase"),
        )
        self.nodes_desired = gauge("redkube_cluster_nodes_desired", "Nodes the spec asks for")
        self.nodes_ready = gauge(
            "redkube_cluster_nodes_ready",
            "Nodes running, reporting cluster_state:ok, serving as their shard's master or a "
            "linked replica of it",
        )
        self.replicas_desired = gauge(
            "redkube_cluster_replicas_desired", "Replicas per shard the spec asks for"
        )
        self.masters = gauge("redkube_cluster_masters", "Shards with exactly one master serving")
        self.linked_replicas = gauge(
            "redkube_cluster_linked_replicas", "Replicas whose link to their master is up"
        )
        self.slots_covered = gauge(
            "redkube_cluster_slots_covered", "Hash slots a master serves (of 16384)"
        )
        self.open_slots = gauge(
            "redkube_cluster_open_slots", "Hash slots left importing or migrating on some node"
        )
        self.masters_without_replica = gauge(
            "redkube_cluster_masters_without_replica",
            "Shards whose master has no linked replica (losing the master loses its slots)",
        )
        self.slots_to_move = gauge(
            "redkube_cluster_slots_to_move", "Hash slots a resharding still has to move"
        )
        self.nodes_outdated = gauge(
            "redkube_cluster_nodes_outdated",
            "Nodes a rolling update still has to restart (they run an old revision)",
        )
        self.problems = gauge("redkube_cluster_problems", "Problems the last pass found")
        self.waiting = gauge(
            "redkube_cluster_waiting", "1 while the loop waits on something it named"
        )
        self.last_pass = gauge(
            "redkube_cluster_last_pass_timestamp_seconds", "When the loop last ended a pass"
        )
        self.steps = counter("redkube_steps", "Steps the loop took, by kind", (*CLUSTER, "kind"))
        self.failovers = counter(
            "redkube_failovers",
            "Shards whose master changed, by reason (the loop's own failovers and the others)",
            (*CLUSTER, "reason"),
        )
        self.step_errors = counter("redkube_step_errors", "Steps that failed")
        self.pass_errors = counter(
            "redkube_pass_errors", "Passes that raised or took too long (then retried)"
        )
        self.node_up = gauge(
            "redkube_node_up", "1 when the node answered the last pass", ("cluster", "node")
        )
        self.node_ops = gauge(
            "redkube_node_ops_per_second", "Commands per second (INFO instantaneous)", NODE
        )
        self.node_memory = gauge("redkube_node_used_memory_bytes", "INFO used_memory", NODE)
        self.node_maxmemory = gauge(
            "redkube_node_maxmemory_bytes", "The node's maxmemory (0: no limit)", NODE
        )
        self.node_clients = gauge("redkube_node_connected_clients", "Client connections", NODE)
        self.node_keys = gauge("redkube_node_keys", "Keys the node holds (DBSIZE)", NODE)
        self.node_slots = gauge("redkube_node_slots", "Hash slots the node serves as master", NODE)
        self.node_lag = gauge(
            "redkube_node_replication_lag_bytes",
            "How far a replica's replication offset is behind its master's",
            ("cluster", "node"),
        )
        self.leader = Gauge(
            "redkube_operator_leader",
            "1 while this operator process holds the leader Lease and acts",
            registry=self.registry,
        )
        self._node_families = (
            self.node_ops,
            self.node_memory,
            self.node_maxmemory,
            self.node_clients,
            self.node_keys,
            self.node_slots,
        )
        # Per cluster, every (family, labels) sample set for it.
        self._used: dict[str, set[tuple[Gauge | Counter, tuple[str, ...]]]] = {}
        # Per cluster: each shard's master last seen, each member's state last seen, and the
        # replicas the loop asked to fail over (member name -> reason, passes it is remembered
        # for), to tell why a master changed.
        self._masters: dict[str, dict[int, str]] = {}
        self._states: dict[str, dict[str, str]] = {}
        self._asked: dict[str, dict[str, tuple[str, int]]] = {}

    def _child(self, family: Gauge | Counter, *labels: str) -> Gauge | Counter:
        """The sample of ``family`` for these labels (the first is the cluster), remembered so
        that ``forget`` and the next pass can remove it."""
        self._used.setdefault(labels[0], set()).add((family, labels))
        return family.labels(*labels)

    def _set(self, family: Gauge, *labels: str, value: float) -> None:
        child = self._child(family, *labels)
        assert isinstance(child, Gauge)
        child.set(value)

    def _inc(self, family: Counter, *labels: str) -> None:
        child = self._child(family, *labels)
        assert isinstance(child, Counter)
        child.inc()

    def record_pass(
        self,
        cluster: str,
        spec: ClusterSpec,
        observation: Observation,
        health: Health,
        phase: Phase,
        step: Step,
        failed: bool,
    ) -> None:
        """What one pass found (gauges) and did (counters)."""
        self.record_phase(cluster, phase.value)
        for family, value in (
            (self.nodes_desired, spec.total_members),
            (self.replicas_desired, spec.replicas),
            (self.nodes_ready, health.healthy_members),
            (self.masters, health.masters),
            (self.linked_replicas, health.linked_replicas),
            (self.slots_covered, health.slots_covered),
            (self.open_slots, health.open_slots),
            (self.masters_without_replica, health.masters_without_replica),
            (self.slots_to_move, health.slots_to_move),
            (self.nodes_outdated, health.outdated),
            (self.problems, len(health.problems)),
            (self.waiting, 1 if isinstance(step, Wait) else 0),
            (self.last_pass, time.time()),
        ):
            self._set(family, cluster, value=value)
        self._count_failovers(cluster, observation)
        if step is not None and not isinstance(step, Wait):
            self._inc(self.steps, cluster, step_kind(step))
            if isinstance(step, Failover) and not failed:
                asked = self._asked.setdefault(cluster, {})
                for observed in observation.members:
                    if observed.member.address == step.replica:
                        asked[observed.member.name] = (failover_reason(step), ASKED_PASSES)
        if failed:
            self._inc(self.step_errors, cluster)
        self._record_nodes(cluster, observation)

    def record_phase(self, cluster: str, phase: str) -> None:
        """The phase the cluster's status shows: the loop's own, or one the operator puts over
        it (a restore under way or failed: not Ready, whatever the loop found)."""
        for each in PHASES:
            self._set(self.phase, cluster, each, value=1 if each == phase else 0)

    def _count_failovers(self, cluster: str, observation: Observation) -> None:
        """Count each shard whose master changed since the last pass, by reason: the loop's own
        failover (its reason), the old master's Pod being deleted (`pod_deleted`: the preStop
        hand-over), the old master down (`master_down`: the servers' own election), else
        `external` (someone else's CLUSTER FAILOVER)."""
        masters = self._masters.setdefault(cluster, {})
        before = self._states.get(cluster, {})
        now = member_states(observation)
        asked = self._asked.setdefault(cluster, {})
        for shard, name in shard_masters(observation).items():
            old = masters.get(shard)
            masters[shard] = name
            if old is None or old == name:
                continue
            states = {before.get(old), now.get(old)}
            if name in asked:
                reason = asked.pop(name)[0]
            elif "terminating" in states:
                reason = "pod_deleted"
            elif "down" in states or None in states:
                reason = "master_down"
            else:
                reason = "external"
            self._inc(self.failovers, cluster, reason)
        for name, (reason, passes) in list(asked.items()):
            if passes > 1:
                asked[name] = (reason, passes - 1)
            else:
                del asked[name]
        self._states[cluster] = now

    def record_pass_error(self, cluster: str) -> None:
        self._inc(self.pass_errors, cluster)

    def _record_nodes(self, cluster: str, observation: Observation) -> None:
        """Each node's sample, and none left for nodes gone or for a role a node lost."""
        per_node = {self.node_up, self.node_lag, *self._node_families}
        used = self._used.setdefault(cluster, set())
        before = {entry for entry in used if entry[0] in per_node}
        used -= before
        offsets = {v.node_id: v.replication_offset for v in observation.views()}
        for observed in observation.members:
            name = observed.member.name
            view = observed.view
            self._set(self.node_up, cluster, name, value=0 if view is None else 1)
            if view is None:
                continue
            role = "master" if view.myself.is_master else "replica"
            for family, value in zip(
                self._node_families,
                (
                    view.ops_per_sec,
                    view.used_memory,
                    view.maxmemory,
                    view.connected_clients,
                    view.keys,
                    len(view.myself.slots) if view.myself.is_master else 0,
                ),
                strict=True,
            ):
                shard = str(observed.member.shard)
                self._set(family, cluster, name, shard, role, value=value)
            master = view.myself.master_id
            if master is not None and master in offsets:
                lag = max(0, offsets[master] - view.replication_offset)
                self._set(self.node_lag, cluster, name, value=lag)
        for gone, labels in before - used:
            gone.remove(*labels)

    def forget(self, cluster: str) -> None:
        """A cluster deleted: none of its samples stay."""
        for family, labels in self._used.pop(cluster, set()):
            family.remove(*labels)
        for known in (self._masters, self._states, self._asked):
            known.pop(cluster, None)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` over HTTP, in the Prometheus text format."""

    def __init__(self, metrics: LoopMetrics) -> None:
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _serve(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (the one the system chose when ``port`` is 0)."""
        listening = socket.create_server((host, port), reuse_port=False)
        self.port = int(listening.getsockname()[1])
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, listening).start()
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
