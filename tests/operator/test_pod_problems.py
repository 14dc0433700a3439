"""pod_problem(): why a Pod does not run its server, from the Pod's status alone."""

from __future__ import annotations

from redkube.platform.kubernetes.api import JSON
from redkube.platform.kubernetes.pods import pod_problem


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
