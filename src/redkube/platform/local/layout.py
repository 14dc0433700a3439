"""Where a local cluster keeps its state, and the record of what it is.

``<root>/<name>/`` holds ``cluster.json`` (spec, server binary, members with their current
addresses and failure domains, and whether nodes get a new address each time they start again,
from which pool), ``password`` (0600), ``status.json`` (written by the supervisor), and one
directory per node: ``nodes/<member>/data`` (the volume), ``redis.conf``, ``server.log``, ``pid``.
A password rotation adds ``password.next`` (the new one, while nodes learn it), then
``password.old`` (the old one, accepted until ``rotation.json`` says), both 0600. With TLS,
``tls/`` holds the cluster's CA (``ca.crt``, ``ca.key``) and redkube's client
certificate (``client.crt``, ``client.key``), and each node directory its ``tls.crt`` and
``tls.key``; keys are 0600. ACL users are in ``users.json`` (0600: rules and the SHA-256 of
each password, with the end of its grace period), and ``admin-user`` says that redkube has
switched to its own user (see ``control.users``).
The root is ``$REDKUBE_HOME``, else ``$XDG_STATE_HOME/redkube``, else ``~/.local/state/redkube``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from redkube.model.addresses import Address
from redkube.model.members import FailureDomain
from redkube.model.specs import ClusterSpec
from redkube.model.tls import ClientTls
from redkube.model.users import ADMIN_USER, AclUser
from redkube.platform.certificates import Authority, KeyPair
from redkube.platform.private_files import write_private

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
class Credentials:
    """The password clients (and replicas, as masterauth) use, and every password a node must
    accept: more than one only during a rotation."""

    current: str
    accepted: tuple[str, ...]
    user: str | None = None  # redkube's ACL user once the cluster has users (None: default)


@dataclass(frozen=True)
class Rotation:
    """A password rotation in progress: ``adding`` while the nodes learn the new password (the
    old one is still current), then ``retiring`` from ``retire_at`` on (epoch seconds) the old
    one is removed."""

    adding: bool
    grace_s: float
    retire_at: float | None


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
    # Like a Pod recreated with a new IP: a node that starts again (it has a nodes.conf) gets a
    # fresh address from ``address_pool``, and the record keeps its current one. The next
    # search starts past ``last_address``, the one handed out last.
    new_address_on_restart: bool = False
    address_pool: str | None = None
    last_address: str | None = None
    # Where the supervisor serves its Prometheus metrics: 127.0.0.1 and this port (0: a free one).
    metrics_port: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT,
            "spec": asdict(self.spec),
            "server": self.server,
            "members": [asdict(m) for m in self.members],
        }
        if self.new_address_on_restart:
            data["new_address_on_restart"] = True
            data["address_pool"] = self.address_pool
            data["last_address"] = self.last_address
        if self.metrics_port:
            data["metrics_port"] = self.metrics_port
        return data

    def with_ips(self, ips: dict[str, str], last: str) -> ClusterRecord:
        """The same record with some members (by name) at new addresses, ``last`` handed out
        last."""
        members = tuple(replace(m, ip=ips.get(m.name, m.ip)) for m in self.members)
        return replace(self, members=members, last_address=last)

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
                new_address_on_restart=bool(data.get("new_address_on_restart", False)),
                address_pool=_optional_str(data.get("address_pool")),
                last_address=_optional_str(data.get("last_address")),
                metrics_port=int(data.get("metrics_port", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"{where} is not a valid redkube cluster record ({error})") from error


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


@contextmanager
def addresses_lock(root: Path) -> Iterator[None]:
    """Held while addresses are handed out (a cluster created, a node given a new address), so
    two clusters never take the same one, and while a cluster directory is created."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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

    @property
    def authority(self) -> Authority:
        return Authority(self.dir / "tls", self.name)

    @property
    def client_pair(self) -> KeyPair:
        return KeyPair(self.dir / "tls" / "client.crt", self.dir / "tls" / "client.key")

    def node_pair(self, member: str) -> KeyPair:
        return KeyPair(self.node_dir(member) / "tls.crt", self.node_dir(member) / "tls.key")

    def client_tls(self, spec: ClusterSpec) -> ClientTls | None:
        """What redkube's own clients present, when the cluster speaks TLS (issued on first
        use)."""
        if not spec.tls:
            return None
        pair = self.client_pair
        self.authority.issue(pair, f"redkube.{self.name}")
        return ClientTls(str(self.authority.cert_path), str(pair.cert), str(pair.key))

    def node_dir(self, member: str) -> Path:
        return self.dir / "nodes" / member

    def data_dir(self, member: str) -> Path:
        return self.node_dir(member) / "data"

    def nodes_conf_path(self, member: str) -> Path:
        """Written by the server on its first start: peers may know the node from then on."""
        return self.data_dir(member) / "nodes.conf"

    def log_path(self, member: str) -> Path:
        return self.node_dir(member) / "server.log"

    def pid_path(self, member: str) -> Path:
        return self.node_dir(member) / "pid"

    def killed_path(self, member: str) -> Path:
        """The pid `redkube kill` killed on purpose (a Pod deleted), not a crash to back off."""
        return self.node_dir(member) / "killed"

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

    @property
    def rotation_path(self) -> Path:
        return self.dir / "rotation.json"

    def rotation(self) -> Rotation | None:
        try:
            data = json.loads(self.rotation_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise StateError(f"cannot read {self.rotation_path}: {error}") from error
        retire_at = data.get("retire_at")
        return Rotation(
            adding=self._next_path.exists(),
            grace_s=float(data["grace_s"]),
            retire_at=None if retire_at is None else float(retire_at),
        )

    @property
    def _next_path(self) -> Path:
        return self.dir / "password.next"

    @property
    def _old_path(self) -> Path:
        return self.dir / "password.old"

    def credentials(self) -> Credentials:
        current = self.password()
        user = self.admin_user()
        rotation = self.rotation()
        if rotation is None:
            return Credentials(current, (current,), user)
        other = self._next_path if rotation.adding else self._old_path
        try:
            second = other.read_text().strip()
        except FileNotFoundError:
            return Credentials(current, (current,), user)
        return Credentials(current, (current, second), user)

    @property
    def users_path(self) -> Path:
        return self.dir / "users.json"

    @property
    def _admin_user_path(self) -> Path:
        return self.dir / "admin-user"

    def users(self, now: float) -> tuple[AclUser, ...]:
        """The users the cluster should have at ``now`` (a password past its grace is gone)."""
        return tuple(
            AclUser(name, tuple(entry["rules"]), tuple(p["sha256"] for p in _live(entry, now)))
            for name, entry in sorted(self._read_users().items())
        )

    def _read_users(self) -> dict[str, Any]:
        try:
            data = json.loads(self.users_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise StateError(f"cannot read {self.users_path}: {error}") from error
        if not isinstance(data, dict):
            raise StateError(f"{self.users_path} is not a redkube users file")
        return data

    def set_user(
        self,
        name: str,
        rules: tuple[str, ...],
        password_hash: str | None,
        grace_s: float,
        now: float,
    ) -> None:
        """A user added or changed. A new password comes first; the user's other passwords
        are accepted for ``grace_s`` more (a password dropped earlier keeps its own end).
        ``password_hash`` None: the passwords stay as they are."""
        users = self._read_users()
        passwords = _live(users.get(name, {}), now)
        if password_hash is not None and (not passwords or passwords[0]["sha256"] != password_hash):
            ending = [
                {**p, "until": now + grace_s if p["until"] is None else p["until"]}
                for p in passwords
                if p["sha256"] != password_hash
            ]
            passwords = [{"sha256": password_hash, "until": None}, *ending]
        if not passwords:
            raise StateError(f"user {name!r} is new: give its password (--password-file)")
        users[name] = {"rules": list(rules), "passwords": passwords}
        write_private(self.users_path, (json.dumps(users, indent=2) + "\n").encode())

    def delete_user(self, name: str) -> bool:
        users = self._read_users()
        if users.pop(name, None) is None:
            return False
        write_private(self.users_path, (json.dumps(users, indent=2) + "\n").encode())
        return True

    @property
    def _users_applied_path(self) -> Path:
        return self.dir / "users.applied"

    def users_applied(self) -> str | None:
        """The fingerprint of the users every running node had when the supervisor last
        looked (``model.users.fingerprint``)."""
        try:
            return self._users_applied_path.read_text().strip()
        except FileNotFoundError:
            return None

    def write_users_applied(self, fingerprint: str) -> None:
        if self.users_applied() != fingerprint:
            write_private(self._users_applied_path, fingerprint.encode())

    def admin_user(self) -> str | None:
        """The user redkube's clients and replicas authenticate as: ``redkube`` once every node
        has it and the cluster has users (``control.users`` switches), else the default user."""
        return ADMIN_USER if self._admin_user_path.exists() else None

    def switch_admin_user(self, on: bool) -> None:
        if on:
            self._admin_user_path.write_text(ADMIN_USER + "\n")
        else:
            self._admin_user_path.unlink(missing_ok=True)

    def begin_rotation(self, grace_s: float) -> None:
        """A new password, not in use yet: the supervisor teaches it to every node first."""
        if self.rotation() is not None:
            raise StateError(
                f"cluster {self.name!r} is already rotating its password; wait until the old "
                "one is removed (see `redkube status`)"
            )
        _write_password(self._next_path, secrets.token_urlsafe(24))
        write_json(self.rotation_path, {"grace_s": grace_s, "retire_at": None})

    def switch_password(self, now: float) -> None:
        """Every node accepts the new password: it becomes the current one, and the old one is
        accepted until the grace period ends. Each step can be repeated after a crash."""
        rotation = self.rotation()
        assert rotation is not None and rotation.adding
        retire_at = rotation.retire_at if rotation.retire_at is not None else now + rotation.grace_s
        write_json(self.rotation_path, {"grace_s": rotation.grace_s, "retire_at": retire_at})
        if not self._old_path.exists():
            _write_password(self._old_path, self.password())
        self._next_path.replace(self.password_path)

    def end_rotation(self) -> None:
        self._old_path.unlink(missing_ok=True)
        self.rotation_path.unlink(missing_ok=True)

    def create(self, record: ClusterRecord) -> None:
        """Write the record and a fresh password at once: a new directory renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=self.root))
        _write_password(staging / "password", secrets.token_urlsafe(24))
        write_json(staging / "cluster.json", record.to_json())
        try:
            staging.rename(self.dir)
        except OSError as error:
            raise StateError(f"cannot create {self.dir}: {error}") from error

    def save(self, record: ClusterRecord) -> None:
        """Replace the record (atomically); only the supervisor does, under addresses_lock."""
        write_json(self.record_path, record.to_json())

    def other_clusters(self) -> list[ClusterLayout]:
        if not self.root.is_dir():
            return []
        return [
            ClusterLayout(self.root, entry.name)
            for entry in sorted(self.root.iterdir())
            if entry.name != self.name and (entry / "cluster.json").exists()
        ]


def _live(user: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """A user's passwords still accepted at ``now``."""
    passwords: list[dict[str, Any]] = user.get("passwords", [])
    return [p for p in passwords if p["until"] is None or p["until"] > now]


def _write_password(path: Path, password: str) -> None:
    write_private(path, (password + "\n").encode())


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
