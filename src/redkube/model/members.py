"""Cluster members as the platform sees them: pods, or local processes with pod semantics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from redkube.model.addresses import Address


class MemberState(Enum):
    RUNNING = "running"
    STOPPED = "stopped"  # dead or never started: the platform will start it when asked
    BACKOFF = "backoff"  # crashed repeatedly: the platform waits before starting it again


@dataclass(frozen=True, order=True)
class FailureDomain:
    host: str
    zone: str

    def __str__(self) -> str:
        return f"{self.host}/{self.zone}"


@dataclass(frozen=True)
class Member:
    """One Redis node's slot in the spec: a StatefulSet pod ``<cluster>-<shard>-<ordinal>``."""

    name: str
    shard: int
    ordinal: int
    address: Address | None
    domain: FailureDomain
    state: MemberState
    # Still running but on its way out (a Pod with a deletionTimestamp): not a healthy member.
    terminating: bool = False
    # The revision the member runs (a hash of what defines its process: the Pod template, or the
    # binary and settings locally) and the one it should run; "" where the platform has none,
    # a target of None while the platform has not worked it out yet (a StatefulSet's controller
    # behind its spec).
    revision: str = ""
    target_revision: str | None = ""
    # The platform has lost touch with the member's host (a Kubernetes Node NotReady): a Pod
    # there may still be listed as running while nothing reaches it.
    host_lost: bool = False

    @property
    def running(self) -> bool:
        return self.state is MemberState.RUNNING

    @property
    def outdated(self) -> bool:
        """It runs (or last ran) another revision than the one it should."""
        return (
            bool(self.revision)
            and bool(self.target_revision)
            and (self.revision != self.target_revision)
        )


def member_name(cluster: str, shard: int, ordinal: int) -> str:
    return f"{cluster}-{shard}-{ordinal}"


def cluster_of(member: str) -> str:
    """The cluster part of ``<cluster>-<shard>-<ordinal>``; empty when it is not such a name."""
    return member.rpartition("-")[0].rpartition("-")[0]
