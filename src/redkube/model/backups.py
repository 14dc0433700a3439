"""A backup: one snapshot (an RDB file) per shard, and the manifest that makes them a backup.

The manifest is written last: a backup without one is incomplete and is never restored. It says
what each file holds (its shard's slot ranges, its key count), how to check it (size, sha256),
and when the snapshots were taken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redkube.model.slots import SlotRange

MANIFEST = "manifest.json"
FORMAT = 1


class BackupError(Exception):
    """A backup that cannot be taken or restored; the message is for the user."""


class NotNow(BackupError):
    """The cluster cannot be backed up as it is now (a shard without one master serving its
    slots, slots open); a later try may succeed."""


@dataclass(frozen=True)
class ShardSnapshot:
    shard: int
    slots: tuple[SlotRange, ...]
    file: str  # relative to the backup's directory
    keys: int  # DBSIZE of the node the snapshot came from, when it was taken
    size: int
    sha256: str
    node: str  # the member it came from, and its role then
    role: str
    started: float
    ended: float

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["slots"] = [str(r) for r in self.slots]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardSnapshot:
        ranges = []
        for text in data["slots"]:
            start, _, end = str(text).partition("-")
            ranges.append(SlotRange(int(start), int(end or start)))
        return cls(
            shard=int(data["shard"]),
            slots=tuple(ranges),
            file=str(data["file"]),
            keys=int(data["keys"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            node=str(data["node"]),
            role=str(data["role"]),
            started=float(data["started"]),
            ended=float(data["ended"]),
        )


@dataclass(frozen=True)
class BackupManifest:
    cluster: str
    server: str  # family and version, e.g. "valkey 9.1.2"
    shards: tuple[ShardSnapshot, ...]
    started: float
    ended: float
    # Writes paused on every master while the snapshots began (`--consistent`): one point in
    # time across shards. Otherwise each shard's snapshot is its own point in time.
    consistent: bool
    paused_ms: float = 0.0  # how long writes were paused, when consistent

    @property
    def keys(self) -> int:
        return sum(s.keys for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "cluster": self.cluster,
            "server": self.server,
            "started": self.started,
            "ended": self.ended,
            "consistent": self.consistent,
            "paused_ms": self.paused_ms,
            "keys": self.keys,
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackupManifest:
        if data.get("format") != FORMAT:
            raise BackupError(
                f"a backup manifest of format {data.get('format')!r}; this redkube reads {FORMAT}"
            )
        try:
            return cls(
                cluster=str(data["cluster"]),
                server=str(data["server"]),
                shards=tuple(ShardSnapshot.from_json(s) for s in data["shards"]),
                started=float(data["started"]),
                ended=float(data["ended"]),
                consistent=bool(data["consistent"]),
                paused_ms=float(data.get("paused_ms", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BackupError(f"the backup manifest is not valid ({error})") from error
