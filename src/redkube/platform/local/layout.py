"""Where a local cluster keeps its state, and the record of what it is.

``<root>/<name>/`` holds ``cluster.json`` (spec, server binary, members with their addresses and
failure domains), ``password`` (0600), ``status.json`` (written by the supervisor), and one
directory per node: ``nodes/<member>/data`` (the volume), ``redis.conf``, ``server.log``, ``pid``.
The root is ``$REDKUBE_HOME``, else ``$XDG_STATE_HOME/redkube``, else ``~/.local/state/redkube``.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redkube.model.addresses import Address
from redkube.model.members import FailureDomain
from redkube.model.specs import ClusterSpec

FORMAT = 1


class StateError(Exception):
    """The state directory is missing, unreadable, or from another redkube."""


def state_root() -> Path:
    if home := os.environ.get("REDKUBE_HOME"):
        return Path(home)
    if xdg := os.environ.get("XDG_STATE_HOME"):
        return Path(xdg) / "redkube"
    return Path.home() / ".local" / "state" / "redkube"


@dataclass(frozen=True)
class MemberRecord:
    name: str
    shard: int
    ordinal: int
    host: str
    zone: str
    ip: str

    @property
    def address(self) -> Address:
        return Address(self.ip)

    @property
    def domain(self) -> FailureDomain:
        return FailureDomain(self.host, self.zone)


@dataclass(frozen=True)
class ClusterRecord:
    spec: ClusterSpec
    server: str
    members: tuple[MemberRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "spec": asdict(self.spec),
            "server": self.server,
            "members": [asdict(m) for m in self.members],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> ClusterRecord:
        found = data.get("format")
        if found != FORMAT:
            raise StateError(
                f"{where} was written by a redkube with state format {found!r}; "
                f"this redkube reads format {FORMAT}"
            )
        try:
            return cls(
                spec=ClusterSpec(**data["spec"]),
                server=str(data["server"]),
                members=tuple(MemberRecord(**m) for m in data["members"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"{where} is not a valid redkube cluster record ({error})") from error


class ClusterLayout:
    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.dir = root / name

    @property
    def record_path(self) -> Path:
        return self.dir / "cluster.json"

    @property
    def password_path(self) -> Path:
        return self.dir / "password"

    @property
    def status_path(self) -> Path:
        return self.dir / "status.json"

    @property
    def supervisor_pid_path(self) -> Path:
        return self.dir / "supervisor.pid"

    @property
    def supervisor_log_path(self) -> Path:
        return self.dir / "supervisor.log"

    def node_dir(self, member: str) -> Path:
        return self.dir / "nodes" / member

    def data_dir(self, member: str) -> Path:
        return self.node_dir(member) / "data"

    def log_path(self, member: str) -> Path:
        return self.node_dir(member) / "server.log"

    def pid_path(self, member: str) -> Path:
        return self.node_dir(member) / "pid"

    def exists(self) -> bool:
        return self.record_path.exists()

    def load(self) -> ClusterRecord:
        try:
            data = json.loads(self.record_path.read_text())
        except FileNotFoundError as error:
            raise StateError(f"no cluster named {self.name!r} under {self.root}") from error
        except (OSError, json.JSONDecodeError) as error:
            raise StateError(f"cannot read {self.record_path}: {error}") from error
        if not isinstance(data, dict):
            raise StateError(f"{self.record_path} is not a redkube cluster record")
        return ClusterRecord.from_json(data, self.record_path)

    def load_member(self, name: str) -> MemberRecord:
        for member in self.load().members:
            if member.name == name:
                return member
        raise StateError(f"cluster {self.name!r} has no node named {name!r}")

    def password(self) -> str:
        return self.password_path.read_text().strip()

    def create(self, record: ClusterRecord) -> None:
        """Write the record and a fresh password at once: a new directory renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=self.root))
        password = staging / "password"
        password.touch(mode=0o600)
        password.write_text(secrets.token_urlsafe(24) + "\n")
        write_json(staging / "cluster.json", record.to_json())
        try:
            staging.rename(self.dir)
        except OSError as error:
            raise StateError(f"cannot create {self.dir}: {error}") from error

    def other_clusters(self) -> list[ClusterLayout]:
        if not self.root.is_dir():
            return []
        return [
            ClusterLayout(self.root, entry.name)
            for entry in sorted(self.root.iterdir())
            if entry.name != self.name and (entry / "cluster.json").exists()
        ]


def write_json(path: Path, data: object) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def log_tail(path: Path, lines: int) -> list[str] | None:
    """The last ``lines`` lines of a log (reading only its end); None when it cannot be read."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 200 * lines - 4096))
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    return text.strip().splitlines()[-lines:]


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False
