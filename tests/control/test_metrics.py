"""control.metrics: what one pass puts in the registry, and what it takes out again."""

from __future__ import annotations

from redkube.control.metrics import LoopMetrics, failover_reason, step_kind
from redkube.control.statuses import Phase
from redkube.model.actions import Failover, FailoverMode, MoveSlots, Step, Wait
from redkube.model.addresses import Address
from redkube.planning.assessing import assess
from tests.planning.builders import Cluster


def sample(metrics: LoopMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def record(metrics: LoopMetrics, cluster: Cluster, step: Step = None, failed: bool = False) -> None:
    spec, observation = cluster.spec(), cluster.observe()
    health = assess(spec, observation)
    phase = Phase.READY if health.ok else Phase.HEALING
    metrics.record_pass("ns/demo", spec, observation, health, phase, step, failed)


def test_a_healthy_cluster() -> None:
    metrics = LoopMetrics()
    record(metrics, Cluster.healthy(3, 1))
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Ready") == 1
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Healing") == 0
    assert sample(metrics, "redkube_cluster_slots_covered", cluster="ns/demo") == 16384
    assert sample(metrics, "redkube_cluster_nodes_ready", cluster="ns/demo") == 6
    assert sample(metrics, "redkube_cluster_masters_without_replica", cluster="ns/demo") == 0
    assert sample(metrics, "redkube_node_up", cluster="ns/demo", node="demo-0-1") == 1
    lag = sample(metrics, "redkube_node_replication_lag_bytes", cluster="ns/demo", node="demo-0-1")
    assert lag == 0
    node = {"cluster": "ns/demo", "node": "demo-1-0", "shard": "1", "role": "master"}
    assert sample(metrics, "redkube_node_keys", **node) == 101
    assert sample(metrics, "redkube_node_slots", **node) == 5462


def test_a_dead_node_and_a_lagging_replica() -> None:
    metrics = LoopMetrics()
    cluster = Cluster.healthy(3, 1)
    cluster.node(1, 1).offset = 400
    cluster.stop(2, 1)
    record(metrics, cluster)
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Healing") == 1
    assert sample(metrics, "redkube_node_up", cluster="ns/demo", node="demo-2-1") == 0
    lag = sample(metrics, "redkube_node_replication_lag_bytes", cluster="ns/demo", node="demo-1-1")
    assert lag == 600
    assert sample(metrics, "redkube_cluster_masters_without_replica", cluster="ns/demo") == 1


def failovers(metrics: LoopMetrics, reason: str) -> float | None:
    return sample(metrics, "redkube_failovers_total", cluster="ns/demo", reason=reason)


def test_steps_are_counted_by_kind_and_a_failover_when_the_master_changed() -> None:
    metrics = LoopMetrics()
    cluster = Cluster.healthy(3, 1)
    replica = cluster.node(0, 1).address
    spread = Failover(replica, FailoverMode.DEFAULT, "spreading masters: ...")
    record(metrics, cluster, spread)
    record(metrics, cluster, Wait("something"), failed=True)
    assert sample(metrics, "redkube_steps_total", cluster="ns/demo", kind="failover") == 1
    assert failovers(metrics, "spreading") is None  # asked, not yet done
    cluster.promote_unseen(0)
    record(metrics, cluster)
    assert failovers(metrics, "spreading") == 1
    record(metrics, cluster)  # the same master: no more
    assert failovers(metrics, "spreading") == 1
    assert sample(metrics, "redkube_step_errors_total", cluster="ns/demo") == 1
    assert sample(metrics, "redkube_cluster_waiting", cluster="ns/demo") == 0


def test_a_master_whose_pod_was_deleted_hands_over_and_is_counted_so() -> None:
    metrics = LoopMetrics()
    cluster = Cluster.healthy(3, 1)
    record(metrics, cluster)
    cluster.seat(1, 0).terminating = True
    record(metrics, cluster)
    cluster.promote_unseen(1)  # the preStop hook's CLUSTER FAILOVER
    record(metrics, cluster)
    assert failovers(metrics, "pod_deleted") == 1
    assert failovers(metrics, "master_down") is None


def test_a_master_that_died_and_one_failed_over_by_someone_else() -> None:
    metrics = LoopMetrics()
    cluster = Cluster.healthy(3, 1)
    record(metrics, cluster)
    cluster.promote_unseen(2)  # a CLUSTER FAILOVER the loop did not ask for
    record(metrics, cluster)
    assert failovers(metrics, "external") == 1
    cluster.stop(0, 0)
    record(metrics, cluster)
    cluster.promote_unseen(0)  # the servers' own election
    record(metrics, cluster)
    assert failovers(metrics, "master_down") == 1
    assert failovers(metrics, "external") == 1


def test_the_standard_process_metrics_are_served_too() -> None:
    metrics, other = LoopMetrics(), LoopMetrics()  # one registry each: no clash
    assert (sample(metrics, "process_resident_memory_bytes") or 0) > 0
    assert (sample(other, "process_cpu_seconds_total") or 0) > 0
    assert b"python_info" in metrics.exposition()


def test_gone_nodes_and_deleted_clusters_leave_no_samples() -> None:
    metrics = LoopMetrics()
    record(metrics, Cluster.healthy(3, 1))
    record(metrics, Cluster.healthy(2, 1))  # scaled in: demo-2-* are gone
    assert sample(metrics, "redkube_node_up", cluster="ns/demo", node="demo-2-0") is None
    assert sample(metrics, "redkube_node_up", cluster="ns/demo", node="demo-1-0") == 1
    metrics.forget("ns/demo")
    assert b'cluster="ns/demo"' not in metrics.exposition()


def test_labels_of_steps() -> None:
    assert step_kind(MoveSlots((), atomic=True)) == "move_slots"
    planned = Failover(Address("127.0.0.2"), FailoverMode.DEFAULT, "rolling update: ...")
    assert failover_reason(planned) == "planned"
    assert failover_reason(Failover(Address("127.0.0.2"), FailoverMode.FORCE, "dead")) == (
        "master_down"
    )


def test_a_phase_put_over_the_loops_shows_and_goes_with_the_next_pass() -> None:
    """A restore under way: the loop finds the cluster Ready, the status says Restoring, and
    so does the metric (an alert on Ready == 0 sees it); once over, the loop's phase again."""
    metrics = LoopMetrics()
    record(metrics, Cluster.healthy(3, 1))
    metrics.record_phase("ns/demo", "Restoring")
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Restoring") == 1
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Ready") == 0
    record(metrics, Cluster.healthy(3, 1))
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Restoring") == 0
    assert sample(metrics, "redkube_cluster_phase", cluster="ns/demo", phase="Ready") == 1
