"""Which server version changes the data survives, decided before any node restarts.

A node restarted on another server loads the RDB (or the AOF's RDB preamble) the old one wrote;
a server refuses an RDB newer than its own format. The formats, from the servers' sources and
release notes: Redis 7.0 writes RDB 10, Redis 7.2 RDB 11, Redis 7.4 RDB 12 (which Valkey cannot
read); Valkey 7.2 and 8.x write RDB 11 (Redis 7.2's); Valkey 9 writes RDB 80 under a VALKEY
magic that no Redis and no Valkey 8 reads. A replica of another version also syncs from its
master by RDB, so a rolling change is safe only when every new node reads the old nodes' RDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# image tag -> version: `redis:7.0.15`, `valkey/valkey:9.1`, `redis:7-alpine`
IMAGE_VERSION = re.compile(r"(?:^|/)(redis|valkey/valkey):(\d+)(?:\.(\d+))?")
# INFO's server name and version, as NodeView.version holds it: `valkey 9.1.2`
SERVER_VERSION = re.compile(r"^(redis|valkey) (\d+)\.(\d+)")


@dataclass(frozen=True)
class ServerVersion:
    family: str  # "redis" or "valkey"
    major: int
    minor: int | None  # None: a tag that names only the major (`redis:7`)

    def __str__(self) -> str:
        minor = "" if self.minor is None else f".{self.minor}"
        return f"{'Valkey' if self.family == 'valkey' else 'Redis'} {self.major}{minor}"

    @property
    def rdb_version(self) -> int:
        """The RDB format this server writes (a major-only tag: the newest of that major)."""
        if self.family == "valkey":
            return 80 if self.major >= 9 else 11
        minor = 4 if self.minor is None else self.minor
        if self.major > 7 or minor >= 4:
            return 12
        return 11 if minor >= 2 else 10

    def reads(self, other: ServerVersion) -> bool:
        """Whether this server loads the RDB ``other`` writes."""
        theirs = other.rdb_version
        if self.family == "valkey" and other.family == "redis":
            return theirs <= 11  # Redis' RDB 12 and later are foreign to Valkey
        return theirs <= self.rdb_version


def version_of_image(image: str) -> ServerVersion | None:
    found = IMAGE_VERSION.search(image)
    if found is None:
        return None
    family = "valkey" if found[1].startswith("valkey") else "redis"
    return ServerVersion(family, int(found[2]), None if found[3] is None else int(found[3]))


def version_of_server(version: str) -> ServerVersion | None:
    """From NodeView.version (`redis 7.0.15`) or `redis-server --version`'s family and number."""
    found = SERVER_VERSION.match(version.lower())
    if found is None:
        return None
    return ServerVersion(found[1], int(found[2]), int(found[3]))


def change_refusal(old: ServerVersion, new: ServerVersion) -> str | None:
    """Why the cluster's data would not survive moving from ``old`` to ``new``; None when it
    does (the same format, or a newer one that reads the old)."""
    if new.reads(old):
        return None
    return (
        f"{new} cannot load the data {old} writes (RDB format {old.rdb_version}, newer than "
        f"{new} reads); refusing to restart any node on it: keep {old}, or move the data with a "
        "backup and restore"
    )
