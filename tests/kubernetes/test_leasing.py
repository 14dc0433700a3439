"""Leader-election decisions and Lease bodies, on plain data (client-go's rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from redkube.kubernetes.leasing import (
    Observation,
    Verdict,
    acquire_body,
    judge,
    lease_path,
    micro_time,
    new_lease,
    observe,
    release_body,
    renew_body,
)

JSON = dict[str, Any]
ME, OTHER = "operator-a", "operator-b"
AT = datetime(2025, 3, 4, 5, 6, 7, 89, tzinfo=UTC)
EARLIER = "2025-03-04T05:00:00.000000Z"


def lease(holder: str | None = OTHER, duration: int = 15, transitions: int = 3) -> JSON:
    spec: JSON = {
        "leaseDurationSeconds": duration,
        "acquireTime": EARLIER,
        "renewTime": EARLIER,
        "leaseTransitions": transitions,
    }
    if holder is not None:
        spec["holderIdentity"] = holder
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "redkube-operator", "namespace": "ns", "resourceVersion": "42"},
        "spec": spec,
    }


def test_micro_time_is_rfc3339_utc_with_microseconds() -> None:
    assert micro_time(AT) == "2025-03-04T05:06:07.000089Z"
    assert micro_time(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert micro_time(datetime(2025, 1, 1, 2, tzinfo=plus_two)) == "2025-01-01T00:00:00.000000Z"
    with pytest.raises(ValueError):
        micro_time(datetime(2025, 1, 1))


def test_paths() -> None:
    assert lease_path("ns") == "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
    assert lease_path("ns", "x") == "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x"


def test_a_new_lease_is_ours_from_now_with_no_transitions() -> None:
    body = new_lease("ns", "redkube-operator", ME, 15, AT)
    assert body["metadata"] == {"name": "redkube-operator", "namespace": "ns"}
    assert body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2025-03-04T05:06:07.000089Z",
        "renewTime": "2025-03-04T05:06:07.000089Z",
        "leaseTransitions": 0,
    }


def test_lease_duration_is_whole_seconds_never_shorter() -> None:
    assert new_lease("ns", "x", ME, 2.5, AT)["spec"]["leaseDurationSeconds"] == 3
    assert new_lease("ns", "x", ME, 0.2, AT)["spec"]["leaseDurationSeconds"] == 1


@pytest.mark.parametrize(
    ("holder", "verdict"), [(ME, Verdict.MINE), (None, Verdict.FREE), ("", Verdict.FREE)]
)
def test_mine_and_free_do_not_depend_on_time(holder: str | None, verdict: Verdict) -> None:
    seen = observe(None, lease(holder), now=100.0)
    for now in (100.0, 105.0, 10_000.0):
        assert judge(seen, ME, now, 15) is verdict


def test_another_holder_expires_a_lease_duration_after_we_saw_the_record_change() -> None:
    seen = observe(None, lease(OTHER, duration=15), now=100.0)
    assert judge(seen, ME, 100.0, 15) is Verdict.HELD
    assert judge(seen, ME, 114.9, 15) is Verdict.HELD
    assert judge(seen, ME, 115.0, 15) is Verdict.EXPIRED
    assert not judge(seen, ME, 114.9, 15).takeable
    assert judge(seen, ME, 115.0, 15).takeable


def test_expiry_ignores_the_renew_time_written_by_a_skewed_clock() -> None:
    """A renewTime far in the past or the future changes nothing: only when we saw it change."""
    for stamp in ("1999-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z"):
        record = lease(OTHER)
        record["spec"]["renewTime"] = stamp
        seen = observe(None, record, now=100.0)
        assert judge(seen, ME, 110.0, 15) is Verdict.HELD
        assert judge(seen, ME, 116.0, 15) is Verdict.EXPIRED


def test_the_clock_restarts_only_when_the_record_changes() -> None:
    first = observe(None, lease(OTHER), now=100.0)
    same = observe(first, lease(OTHER), now=110.0)
    assert same.seen_at == 100.0
    assert judge(same, ME, 115.0, 15) is Verdict.EXPIRED
    renewed = lease(OTHER)
    renewed["spec"]["renewTime"] = "2025-03-04T05:00:02.000000Z"
    renewed["metadata"]["resourceVersion"] = "43"
    later = observe(same, renewed, now=112.0)
    assert later.seen_at == 112.0
    assert later.lease["metadata"]["resourceVersion"] == "43"
    assert judge(later, ME, 115.0, 15) is Verdict.HELD
    assert judge(later, ME, 127.0, 15) is Verdict.EXPIRED


def test_the_holders_own_duration_counts_else_ours() -> None:
    short = observe(None, lease(OTHER, duration=4), now=100.0)
    assert judge(short, ME, 104.0, 15) is Verdict.EXPIRED
    record = lease(OTHER)
    del record["spec"]["leaseDurationSeconds"]
    unstated = observe(None, record, now=100.0)
    assert judge(unstated, ME, 110.0, 15) is Verdict.HELD
    assert judge(unstated, ME, 115.0, 15) is Verdict.EXPIRED


def test_acquiring_from_another_holder_starts_a_new_term() -> None:
    seen = observe(None, lease(OTHER, transitions=3), now=100.0)
    body = acquire_body(seen, ME, 15, AT)
    assert body["metadata"]["resourceVersion"] == "42"  # optimistic concurrency
    assert body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2025-03-04T05:06:07.000089Z",
        "renewTime": "2025-03-04T05:06:07.000089Z",
        "leaseTransitions": 4,
    }
    assert seen.lease["spec"]["holderIdentity"] == OTHER  # the observation is not changed


def test_acquiring_a_released_lease_counts_a_transition() -> None:
    seen = observe(None, lease(None, duration=1, transitions=3), now=100.0)
    assert acquire_body(seen, ME, 15, AT)["spec"]["leaseTransitions"] == 4


def test_acquiring_our_own_lease_is_a_renewal() -> None:
    seen = observe(None, lease(ME, transitions=3), now=100.0)
    assert acquire_body(seen, ME, 15, AT) == renew_body(seen, ME, 15, AT)


def test_renewing_keeps_the_term() -> None:
    seen = observe(None, lease(ME, transitions=3), now=100.0)
    body = renew_body(seen, ME, 15, AT)
    assert body["metadata"]["resourceVersion"] == "42"
    assert body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": EARLIER,
        "renewTime": "2025-03-04T05:06:07.000089Z",
        "leaseTransitions": 3,
    }


def test_release_clears_the_holder_with_a_one_second_duration() -> None:
    seen = observe(None, lease(ME, transitions=3), now=100.0)
    body = release_body(seen, AT)
    assert body["metadata"]["resourceVersion"] == "42"
    assert body["spec"] == {
        "leaseDurationSeconds": 1,
        "acquireTime": "2025-03-04T05:06:07.000089Z",
        "renewTime": "2025-03-04T05:06:07.000089Z",
        "leaseTransitions": 3,
    }
    released = observe(seen, body, now=101.0)
    assert judge(released, OTHER, 101.0, 15) is Verdict.FREE


def test_other_spec_fields_are_kept() -> None:
    record = lease(ME)
    record["spec"]["strategy"] = "OldestEmulationVersion"
    seen = observe(None, record, now=0.0)
    for body in (renew_body(seen, ME, 15, AT), release_body(seen, AT)):
        assert body["spec"]["strategy"] == "OldestEmulationVersion"
    other = Observation(lease(OTHER), 0.0)
    assert other.holder == OTHER and other.transitions == 3 and other.duration_s(9) == 15
