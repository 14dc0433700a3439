"""What the user asked for."""

from __future__ import annotations

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

    def __post_init__(self) -> None:
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
        if self.node_timeout_ms < MIN_NODE_TIMEOUT_MS:
            raise SpecError(
                f"node timeout must be at least {MIN_NODE_TIMEOUT_MS} ms "
                f"(got {self.node_timeout_ms})"
            )

    @property
    def members_per_shard(self) -> int:
        return 1 + self.replicas

    @property
    def total_members(self) -> int:
        return self.shards * self.members_per_shard
