"""ACL users of a cluster, and redkube's own user beside them.

Without users, everyone (redkube too) is the ``default`` user with the cluster password. With
users, ``default`` is off, each user has its rules and its passwords (kept as SHA-256 hashes,
never in clear), and redkube authenticates as ``redkube`` with the cluster password: a user
that may run only the commands the loop needs (observing, cluster administration, moving keys,
failover, replication, snapshots), and no read command.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ADMIN_USER = "redkube"
RESERVED = ("default", ADMIN_USER)

# The categories and commands the loop uses: administration, observing, moving keys (MIGRATE,
# and DUMP to compare a key found on both sides), and every write command, because Valkey 9's
# atomic slot migration replays a slot's keys on the target as the replication user. No read
# command (GET, HGETALL, ...): redkube's user never reads a value the way a client does.
ADMIN_RULES = (
    "~*", "&*", "-@all", "+@connection", "+@admin", "+@write", "+@transaction", "+cluster",
    "+info", "+config", "+client", "+role", "+dbsize", "+scan", "+keys", "+dump", "+migrate",
    "+restore", "+restore-asking", "+asking", "+del", "+wait", "+bgsave", "+lastsave",
    "+failover", "+replicaof",
)  # fmt: skip

# What any cluster client needs to find its way (redis-py's RedisCluster asks CLUSTER SLOTS
# before anything else), given to every user after its own rules.
CLIENT_RULES = (
    "+@connection", "+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info",
    "+cluster|myid", "+readonly", "+readwrite", "+asking", "+command",
)  # fmt: skip

# Passwords come from files, never from rules: these would set, drop or reveal one.
_PASSWORD_TOKENS = (">", "<", "#", "!")
_PASSWORD_WORDS = ("nopass", "resetpass", "reset")


class AclError(ValueError):
    """A user or its rules that cannot be applied: the message says why, in one line."""


@dataclass(frozen=True)
class AclUser:
    name: str
    rules: tuple[str, ...]
    hashes: tuple[str, ...]  # SHA-256 hex of each accepted password, the current one first

    def setuser(self) -> tuple[str, ...]:
        """ACL SETUSER's arguments: the user made again from nothing, so applying it twice or
        over an older version gives the same user."""
        passwords = (f"#{h}" for h in self.hashes)
        extra = CLIENT_RULES if self.name not in RESERVED else ()
        return (self.name, "reset", "on", *passwords, *self.rules, *extra)

    def config_line(self) -> str:
        """The same user as a ``user`` line of redis.conf (a node that starts has it)."""
        return " ".join((self.name, *self.setuser()[2:]))


def fingerprint(users: tuple[AclUser, ...]) -> str:
    """Names a set of users as they are given to the nodes (hashes included, never shown)."""
    return hashlib.sha256(repr([u.setuser() for u in users]).encode()).hexdigest()[:16]


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def admin_user(passwords: tuple[str, ...]) -> AclUser:
    """redkube's own user, accepting every cluster password of the moment (two during a
    rotation)."""
    return AclUser(ADMIN_USER, ADMIN_RULES, tuple(password_hash(p) for p in passwords))


def parse_rules(text: str) -> tuple[str, ...]:
    """A user's rules as the user gave them (``~app:* +@read``), checked for what redkube
    decides itself; whether the server understands them is checked by the server."""
    rules = tuple(text.split())
    if not rules:
        raise AclError("no rules given: say what the user may do, e.g. '~app:* +@read'")
    for rule in rules:
        if rule.startswith(_PASSWORD_TOKENS) or rule.lower() in _PASSWORD_WORDS:
            raise AclError(
                f"rule {rule!r} is not allowed: passwords come from --password-file, and "
                "redkube resets the user itself"
            )
        if rule.lower() in ("on", "off"):
            raise AclError(f"rule {rule!r} is not allowed: a user is on until it is deleted")
    return rules


def check_name(name: str) -> str:
    if name in RESERVED:
        raise AclError(f"user name {name!r} is reserved (redkube uses {', '.join(RESERVED)})")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise AclError(
            f"user name {name!r}: use letters, digits, '-', '_' or '.' (ACL rules take no other)"
        )
    return name
