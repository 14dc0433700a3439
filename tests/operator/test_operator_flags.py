"""The operator's leader-election flags: bad values are one line and exit code 2, before any
connection to a cluster (no test bed needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROG = "python -m redkube.operator"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--lease-duration=10", "--renew-deadline=10"],
            "--renew-deadline (10s) must be shorter than --lease-duration (10s)",
        ),
        (
            ["--lease-duration=4", "--renew-deadline=6"],
            "--renew-deadline (6s) must be shorter than --lease-duration (4s)",
        ),
        (
            ["--renew-deadline=3", "--retry-period=3"],
            "--retry-period (3s) must be shorter than --renew-deadline (3s)",
        ),
        (
            ["--retry-period=12"],  # the default renew deadline is 10 s
            "--retry-period (12s) must be shorter than --renew-deadline (10s)",
        ),
        (["--retry-period=0"], "--retry-period must be a positive number of seconds"),
        (["--lease-duration=-1"], "--lease-duration must be a positive number of seconds"),
        (["--lease-duration=inf"], "--lease-duration must be a positive number of seconds"),
        (["--renew-deadline=nan"], "--renew-deadline must be a positive number of seconds"),
        (
            ["--leader-election-name="],
            "--leader-election-name and --leader-election-namespace must not be empty",
        ),
    ],
)
def test_bad_leader_election_flags_are_one_line_and_exit_2(flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redkube.operator", "--kubeconfig=/nonexistent", *flags],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"{PROG}: error: {message}\n"
    assert done.stdout == ""


def test_good_flags_are_accepted() -> None:
    from redkube.operator.__main__ import parse_args

    args = parse_args(
        ["--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5", "--namespace=a-*"]
    )
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (4, 3, 0.5)
    assert args.leader_election and args.leader_election_name == "redkube-operator"
    assert not parse_args(["--no-leader-election"]).leader_election


def test_the_lease_namespace_defaults_to_the_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    from redkube.operator.__main__ import identity, parse_args

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_NAME", raising=False)
    assert parse_args([]).leader_election_namespace == "redkube-system"
    assert identity().endswith(f"-{os.getpid()}")
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    monkeypatch.setenv("POD_NAME", "redkube-operator-7d9f-abcde")
    assert parse_args([]).leader_election_namespace == "ops"
    assert identity() == "redkube-operator-7d9f-abcde"


def test_a_missing_kubeconfig_is_one_line(tmp_path: object) -> None:
    missing = f"{tmp_path}/absent.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "redkube.operator", f"--kubeconfig={missing}"],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{PROG}: error: no kubeconfig at {missing} (set KUBECONFIG)"
    ]
