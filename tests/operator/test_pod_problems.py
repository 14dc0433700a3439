"""pod_problem(): why a Pod does not run its server, from the Pod's status alone."""

from __future__ import annotations

from redkube.model.members import MemberState
from redkube.platform.kubernetes.api import JSON
from redkube.platform.kubernetes.pods import pod_problem, pod_state


def pod(status: JSON) -> JSON:
    return {"metadata": {"name": "shop-0-1"}, "spec": {}, "status": status}


def test_unschedulable_quotes_the_scheduler() -> None:
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available"}  # fmt: skip
    found = pod({"conditions": [scheduled]})
    assert pod_problem(found) == "shop-0-1 Unschedulable: 0/3 nodes are available"


def test_crash_loop_gives_the_last_exit_code() -> None:
    found = pod({"containerStatuses": [{
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
        "lastState": {"terminated": {"exitCode": 1}},
    }]})  # fmt: skip
    assert pod_problem(found) == "shop-0-1 CrashLoopBackOff (last exit code 1): back-off 10s"


def test_image_pull_failure_without_a_message() -> None:
    found = pod({"containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull"}}}]})
    assert pod_problem(found) == "shop-0-1 ErrImagePull"


def test_running_starting_and_scheduled_pods_have_none() -> None:
    running = {"state": {"running": {}}}
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    scheduled = [{"type": "PodScheduled", "status": "True"}]
    assert pod_problem(pod({"conditions": scheduled, "containerStatuses": [running]})) is None
    assert pod_problem(pod({"containerStatuses": [creating]})) is None
    assert pod_problem(pod({})) is None


def test_a_sidecar_that_cannot_start_is_named_and_the_server_still_runs() -> None:
    """The kubelet lists container statuses by name: the metrics sidecar comes first."""
    missing = {
        "name": "metrics",
        "state": {
            "waiting": {
                "reason": "ErrImagePull",
                "message": 'pull access denied for "nowhere/exporter"',
            }
        },
    }
    running = {"name": "server", "state": {"running": {}}}
    found = pod({"podIP": "10.1.0.5", "containerStatuses": [missing, running]})
    assert pod_state(found) is MemberState.RUNNING
    assert pod_problem(found) == (
        'shop-0-1\'s metrics sidecar ErrImagePull: pull access denied for "nowhere/exporter";'
        " the node serves without its metrics"
    )


def test_the_servers_problem_comes_before_the_sidecars() -> None:
    missing = {"name": "metrics", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    crashing = {"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1}}}  # fmt: skip
    found = pod({"podIP": "10.1.0.5", "containerStatuses": [missing, crashing]})
    assert pod_state(found) is MemberState.BACKOFF
    assert pod_problem(found) == "shop-0-1 CrashLoopBackOff (last exit code 1)"
