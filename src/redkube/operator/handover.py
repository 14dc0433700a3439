"""Before a scale-in shrinks the StatefulSets: masters on departing ordinals hand their role over.

Shrinking a StatefulSet deletes its highest ordinals at once. A master among them would leave
its shard without a master until Redis or the loop fails over, and its clients would see errors.
So while every member still runs, the operator moves each such master's role to an in-sync
replica that stays (a graceful CLUSTER FAILOVER, no write lost), and only then applies the
smaller StatefulSets. Level-triggered: what runs now is read from the StatefulSets and Pods, so an
operator restarted half-way picks up where it was. The preStop hook, and the loop's failover of a
departed failed master, remain as the fallbacks if this cannot finish in time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from redkube.admin.connections import AdminError, ClientPool
from redkube.admin.executing import execute
from redkube.admin.observing import observe
from redkube.kubernetes.building import CLUSTER_LABEL
from redkube.kubernetes.clusters import RedisCluster
from redkube.model.actions import Failover
from redkube.planning.retiring import hand_over_departing
from redkube.platform.kubernetes.api import KubernetesApi
from redkube.platform.kubernetes.pods import KubernetesPlatform

HANDOVER_TIMEOUT_S = 60.0
POLL_S = 0.5


async def members_per_shard_now(api: KubernetesApi, cluster: RedisCluster) -> int:
    """The most Pods any of the cluster's StatefulSets asks for now (0 before the first apply)."""
    listing = await api.get(
        f"/apis/apps/v1/namespaces/{cluster.namespace}/statefulsets",
        {"labelSelector": f"{CLUSTER_LABEL}={cluster.name}"},
    )
    return max((int(s["spec"].get("replicas", 1)) for s in listing.get("items") or []), default=0)


async def hand_over_before_scale_in(
    api: KubernetesApi,
    cluster: RedisCluster,
    password: str,
    record: Callable[[str], None],
    log: Callable[[str], None],
) -> None:
    """If the spec asks for fewer members per shard than run now, fail every master on a
    departing ordinal over to a replica that stays; bounded by HANDOVER_TIMEOUT_S. Every line
    goes to `log`; what was done also to `record` (an Event for the user)."""

    def tell(message: str) -> None:
        log(message)
        record(message)

    keep = cluster.cluster.members_per_shard
    running = await members_per_shard_now(api, cluster)
    if running <= keep:
        return
    now = dataclasses.replace(cluster.cluster, replicas=running - 1)
    platform = KubernetesPlatform(api, cluster.namespace, now)
    pool = ClientPool(password)
    last_wait = ""
    try:
        deadline = time.monotonic() + HANDOVER_TIMEOUT_S
        while time.monotonic() < deadline:
            await platform.refresh()
            step = hand_over_departing(await observe(platform.members(), pool), keep)
            if step is None:
                return
            if isinstance(step, Failover):
                tell(step.describe())
                try:
                    await execute(step, pool)
                except AdminError as error:
                    tell(f"failed: {error}")
            elif step.reason != last_wait:
                last_wait = step.reason
                log(step.describe())
            await asyncio.sleep(POLL_S)
        tell(
            f"scaling in without a hand-over after {HANDOVER_TIMEOUT_S:g}s ({last_wait or 'no'}); "
            "the preStop hook and the loop fail over instead"
        )
    finally:
        await pool.close()
