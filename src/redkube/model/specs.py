"""What the user asked for."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from redkube.model.slots import TOTAL_SLOTS

NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
MIN_NODE_TIMEOUT_MS = 100


class SpecError(ValueError):
    """A spec that can never be built; the message is meant for the user."""


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    shards: int
    replicas: int
    node_timeout_ms: int = 5000
    # The user's redis.conf settings (lower-case keys, sorted): live ones reach running nodes by
    # CONFIG SET, the others by rolling restarts.
    config: tuple[tuple[str, str], ...] = ()
    # Whether a node's data outlives its restart (a volume and AOF); without it a shard with no
    # replica is never restarted by choice.
    persistent: bool = True
    # spec.updateStrategy.paused: a rolling update stops after the node in progress.
    paused: bool = False
    # TLS on every channel (clients, replication, cluster bus) instead of plain TCP; with
    # ``tls_client_certs`` a client must also present a certificate from the cluster's CA.
    tls: bool = False
    tls_client_certs: bool = False

    def __post_init__(self) -> None:
        # A record read back from JSON holds lists; keep the spec hashable and comparable.
        object.__setattr__(
            self, "config", tuple(sorted((str(k).lower(), str(v)) for k, v in self.config))
        )
        if not NAME_PATTERN.match(self.name):
            raise SpecError(
                f"cluster name {self.name!r} must be 1-40 lowercase letters, digits or '-', "
                "starting with a letter"
            )
        if self.shards < 1:
            raise SpecError(f"shards must be at least 1 (got {self.shards})")
        if self.shards > TOTAL_SLOTS:
            raise SpecError(f"shards must be at most {TOTAL_SLOTS} (got {self.shards})")
        if self.replicas < 0:
            raise SpecError(f"replicas must be 0 or more (got {self.replicas})")
        if self.tls_client_certs and not self.tls:
            raise SpecError("client certificates need TLS")
        if self.node_timeout_ms < MIN_NODE_TIMEOUT_MS:
            raise SpecError(
                f"node timeout must be at least {MIN_NODE_TIMEOUT_MS} ms "
                f"(got {self.node_timeout_ms})"
            )

    def digest(self) -> str:
        """A short hash of everything asked for: a status names the spec it worked to."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:10]

    @property
    def members_per_shard(self) -> int:
        return 1 + self.replicas

    @property
    def total_members(self) -> int:
        return self.shards * self.members_per_shard
