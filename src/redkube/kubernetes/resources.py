"""The RedisCluster CustomResourceDefinition, as plain data: its one source of truth.

    python -m redkube.kubernetes.resources > deploy/crd.yaml

The apiserver itself fills in the defaults and refuses bad objects, through the OpenAPI schema
and the CEL rules (`x-kubernetes-validations`) below, so a mistake is reported to whoever runs
`kubectl apply`, not discovered later by the operator. Transition rules (those using `oldSelf`)
refuse the changes the operator cannot carry out: adding or removing storage,
another storage class. spec.config values of common keys must have the format the server reads
(CONFIG_FORMATS: memory sizes, whole numbers, yes/no, enums), so a value it would refuse to start
with is refused at `kubectl apply`; other keys are passed on unchecked.

Defaults: `spec`, `placement`, `persistence` and `auth` default to `{}`, so an object with no
spec at all reads back with every default filled in (`auth: {}` means "generate a Secret").
`storage` has no default: absent means cache mode, data on an emptyDir.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

GROUP = "redkube.io"
VERSION = "v1alpha1"
KIND = "RedisCluster"
PLURAL = "redisclusters"
SHORT_NAME = "rdc"
CATEGORY = "redkube"
NAME = f"{PLURAL}.{GROUP}"

DEFAULT_IMAGE = "valkey/valkey:9.1"
# The metrics sidecar of every Redis Pod (github.com/oliver006/redis_exporter).
DEFAULT_EXPORTER_IMAGE = "oliver006/redis_exporter:v1.74.0"
DEFAULT_SHARDS = 3
MAX_SHARDS = 100
DEFAULT_REPLICAS = 1
MAX_REPLICAS = 5
DEFAULT_NODE_TIMEOUT_MS = 5000
MIN_NODE_TIMEOUT_MS = 100  # redkube.model.specs.MIN_NODE_TIMEOUT_MS (a test keeps them equal)
MAX_NODE_TIMEOUT_MS = 120_000
DEFAULT_STORAGE_SIZE = "1Gi"
DEFAULT_TOPOLOGY_KEY = "kubernetes.io/hostname"
DEFAULT_ACCESS_KEY = "AWS_ACCESS_KEY_ID"  # the keys of an S3 credentials Secret
DEFAULT_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
DEFAULT_BACKUPS_KEPT = 7

# Pods are named <name>-<shard>-<ordinal>; the same rule as redkube.model.specs.NAME_PATTERN.
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"

# An optional registry host (a dotted name or one with a port, or localhost) and `library/`, then
# redis:7[.-]* or valkey/valkey:8|9[.-]*; no digests. RE2 syntax, no backslashes (a CEL string).
# Stricter than redkube.kubernetes.clusters.IMAGE_PATTERN, which also takes `<anyone>/redis:7`.
IMAGE_PATTERN = (
    r"^(([a-z0-9-]+[.])+[a-z0-9-]+(:[0-9]+)?/|[a-z0-9-]+:[0-9]+/|localhost/)?(library/)?"
    r"(redis:7([.-][0-9A-Za-z_.-]*)?|valkey/valkey:(8|9)([.-][0-9A-Za-z_.-]*)?)$"
)
IMAGE_MESSAGE = "image must be Redis 7.x (redis:7...) or Valkey 8/9 (valkey/valkey:8... or :9...)"

# redis.conf keys the operator sets itself, or that would break or open up the server.
FORBIDDEN_CONFIG_KEYS = (
    "bind", "port", "dir", "cluster-enabled", "cluster-config-file", "cluster-announce-ip",
    "cluster-announce-port", "cluster-announce-bus-port", "cluster-announce-hostname",
    "cluster-port", "requirepass", "masterauth", "masteruser", "replicaof", "slaveof",
    "daemonize", "supervised", "pidfile", "logfile", "unixsocket", "rename-command", "include",
    "loadmodule", "enable-debug-command", "enable-module-command", "protected-mode",
    "appendonly", "appenddirname", "aclfile", "tls-port", "cluster-node-timeout",
    "tls-cluster", "tls-replication", "tls-cert-file", "tls-key-file", "tls-ca-cert-file",
    "tls-ca-cert-dir", "tls-auth-clients", "tls-client-cert-file", "tls-client-key-file",
    "tls-key-file-pass", "tls-client-key-file-pass",
)  # fmt: skip
CONFIG_KEY_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9]{0,63}$"
MAX_CONFIG_KEYS = 64
MAX_CONFIG_VALUE = 1024


@dataclass(frozen=True)
class ConfigFormat:
    """The format of one kind of redis.conf value, as Redis 7 and Valkey 8/9 both parse it.

    `pattern` (RE2, anchored; `(?i)` where the server ignores case) is what a string must match;
    an integer (`hz: 10` in YAML) must be at least `minimum`, and is refused unless `integers`.
    """

    expected: str
    pattern: str
    integers: bool = True
    minimum: int | None = None

    def accepts(self, value: str | int) -> bool:
        if isinstance(value, int):
            return self.integers and (self.minimum is None or value >= self.minimum)
        return re.search(self.pattern, value) is not None


def one_of(*values: str) -> ConfigFormat:
    """An enum: the server compares case-insensitively."""
    pattern = f"(?i)^({'|'.join(values)})$"
    return ConfigFormat("one of " + ", ".join(values), pattern, integers=False)


# Memory: digits and an optional unit, case-insensitive (Redis' memtoull; "" and "mb" read as 0).
MEMORY = ConfigFormat(
    "a memory size such as 100mb, 1gb or 12345 (digits and an optional unit b, k, kb, m, mb, g"
    " or gb)",
    "^[0-9]*([bB]|[kKmMgG][bB]?)?$",
    minimum=0,
)
# Integers: Redis' string2ll, which takes no '+' and no leading zero.
COUNT = ConfigFormat("a whole number, 0 or more, such as 10", "^(0|[1-9][0-9]*)$", minimum=0)
POSITIVE = ConfigFormat("a whole number, 1 or more, such as 16", "^[1-9][0-9]*$", minimum=1)
SIGNED = ConfigFormat("a whole number such as -1 or 10000", "^(0|-?[1-9][0-9]*)$")
YES_NO = ConfigFormat(
    "yes or no (quoted: YAML reads a bare yes or no as a boolean)",
    "(?i)^(yes|no)$",
    integers=False,
)

# Values the server would refuse to start with, for common keys whose format is known; each was
# checked against redis-server 7.0 and valkey-server 9.1. Keys not listed here are not checked
# (the server reports those: see the crash loop's message in the status).
CONFIG_FORMATS: dict[str, ConfigFormat] = {
    **dict.fromkeys(
        ("maxmemory", "repl-backlog-size", "client-query-buffer-limit", "proto-max-bulk-len",
         "active-defrag-ignore-bytes"),
        MEMORY,
    ),
    **dict.fromkeys(
        ("hz", "timeout", "tcp-keepalive", "tcp-backlog", "lfu-log-factor", "lfu-decay-time",
         "slowlog-max-len", "latency-monitor-threshold", "min-replicas-to-write",
         "min-replicas-max-lag", "replica-priority", "repl-backlog-ttl"),
        COUNT,
    ),
    **dict.fromkeys(
        ("maxclients", "databases", "maxmemory-samples", "repl-timeout",
         "repl-ping-replica-period"),
        POSITIVE,
    ),
    "slowlog-log-slower-than": SIGNED,
    **dict.fromkeys(
        ("activerehashing", "lazyfree-lazy-eviction", "lazyfree-lazy-expire",
         "lazyfree-lazy-server-del", "lazyfree-lazy-user-del", "lazyfree-lazy-user-flush",
         "replica-lazy-flush", "replica-serve-stale-data", "replica-read-only",
         "stop-writes-on-bgsave-error", "rdbcompression", "rdbchecksum", "aof-use-rdb-preamble",
         "no-appendfsync-on-rewrite", "aof-load-truncated", "cluster-require-full-coverage",
         "cluster-allow-reads-when-down", "cluster-replica-no-failover"),
        YES_NO,
    ),
    "maxmemory-policy": one_of(
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru",
        "allkeys-lfu", "allkeys-random", "noeviction",
    ),
    "appendfsync": one_of("always", "everysec", "no"),
    # `nothing` since Redis 7.2 and in Valkey.
    "loglevel": one_of("debug", "verbose", "notice", "warning", "nothing"),
}  # fmt: skip


def config_value_message(key: str, value: str, expected: str) -> str:
    """What admission (CEL) and the parser both say about a refused value."""
    return f'config {key} must be {expected}; got "{value}"'


# The pattern Kubernetes publishes for resource.Quantity (as in core/v1's OpenAPI).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


# -- schema pieces -------------------------------------------------------------------------------


def rule(
    expression: str,
    message: str,
    *,
    message_expression: str | None = None,
    field_path: str | None = None,
) -> JSON:
    """One CEL rule; `message` is the fallback when `message_expression` cannot be evaluated."""
    validation: JSON = {"rule": expression, "message": message}
    if message_expression is not None:
        validation["messageExpression"] = message_expression
    if field_path is not None:
        validation["fieldPath"] = field_path
    return validation


def string(description: str, *, max_length: int = 253, **extra: Any) -> JSON:
    return {"type": "string", "description": description, "maxLength": max_length, **extra}


def integer(description: str, **extra: Any) -> JSON:
    return {"type": "integer", "description": description, **extra}


def boolean(description: str, default: bool) -> JSON:
    return {"type": "boolean", "description": description, "default": default}


def enum(description: str, values: list[str], default: str | None = None) -> JSON:
    schema: JSON = {"type": "string", "description": description, "enum": values}
    if default is not None:
        schema["default"] = default
    return schema


def obj(description: str, properties: JSON, **extra: Any) -> JSON:
    return {"type": "object", "description": description, "properties": properties, **extra}


def with_rules(schema: JSON, *rules: JSON) -> JSON:
    """`schema` with CEL rules, checked by the apiserver on every create and update."""
    return {**schema, "x-kubernetes-validations": list(rules)}


def selector_schema(description: str) -> JSON:
    """A label selector, checked by the apiserver when the NetworkPolicy is applied."""
    return {
        "type": "object",
        "description": f"{description} A label selector; {{}} selects all.",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def quantity(description: str, **extra: Any) -> JSON:
    """An int-or-string resource quantity, as `kubectl explain` shows core/v1's."""
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
        **extra,
    }


def cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


# -- spec ----------------------------------------------------------------------------------------


def resources_schema(
    description: str = "CPU and memory for each Redis container, as in a Pod's resources.",
) -> JSON:
    def quantities(description: str) -> JSON:
        return {
            "type": "object",
            "description": description,
            "maxProperties": 16,
            "additionalProperties": quantity("A quantity, e.g. 500m or 2Gi."),
        }

    return obj(
        description,
        {
            "requests": quantities("Minimum resources, e.g. {cpu: 100m, memory: 256Mi}."),
            "limits": quantities("Maximum resources, e.g. {memory: 1Gi}."),
        },
    )


def storage_schema() -> JSON:
    schema = obj(
        "A PersistentVolumeClaim per node. Absent: cache mode, data on an emptyDir that is lost"
        " with the Pod. Cannot be added or removed after creation.",
        {
            "size": quantity(
                "Size of each node's volume, e.g. 10Gi.", default=DEFAULT_STORAGE_SIZE
            ),
            "storageClassName": string(
                "StorageClass of the volumes; absent: the cluster's default class. Immutable.",
                pattern=DNS_SUBDOMAIN_PATTERN,
            ),
        },
    )
    return with_rules(
        schema,
        rule(
            "has(self.storageClassName) == has(oldSelf.storageClassName)"
            " && (!has(self.storageClassName)"
            " || self.storageClassName == oldSelf.storageClassName)",
            "storageClassName cannot be changed; create a new RedisCluster",
            field_path=".storageClassName",
        ),
    )


def config_value_accepted(value_format: ConfigFormat, value: str) -> str:
    """CEL: the int-or-string `value` has `value_format` (the same test as ConfigFormat.accepts)."""
    if not value_format.integers:
        integer = "false"
    elif value_format.minimum is None:
        integer = "true"
    else:
        integer = f"{value} >= {value_format.minimum}"
    return f"(type({value}) == int ? {integer} : {value}.matches('{value_format.pattern}'))"


def config_format_rules() -> list[JSON]:
    """One rule per value format in CONFIG_FORMATS, naming the first key it refuses, its value,
    and what is expected (the same words as clusters.parse)."""
    keys_of: dict[ConfigFormat, list[str]] = {}
    for key, value_format in CONFIG_FORMATS.items():
        keys_of.setdefault(value_format, []).append(key)
    rules = []
    for value_format, keys in keys_of.items():
        listed = cel_list(tuple(keys))
        accepted = config_value_accepted(value_format, "self[k]")
        bad = f"self.filter(k, k.lowerAscii() in {listed} && !{accepted})[0]"
        rules.append(
            rule(
                f"self.all(k, !(k.lowerAscii() in {listed}) || {accepted})",
                f"config {', '.join(keys)} must be {value_format.expected}",
                message_expression=f"'config ' + {bad} + ' must be {value_format.expected}"
                f"; got \"' + string(self[{bad}]) + '\"'",
            )
        )
    return rules


def config_schema() -> JSON:
    forbidden = cel_list(FORBIDDEN_CONFIG_KEYS)
    first_forbidden = f"self.filter(k, k.lowerAscii() in {forbidden})[0]"
    # A line break in a value would smuggle any directive into redis.conf. The value is a string
    # or an integer (`hz: 10` needs no quotes); maxLength also bounds the CEL cost estimates.
    value = with_rules(
        {
            "description": "The value, as it would follow the key in redis.conf (a string or an"
            " integer); a single line.",
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "maxLength": MAX_CONFIG_VALUE,
        },
        rule(
            "type(self) == int || (!self.contains('\\n') && !self.contains('\\r'))",
            "config values must be a single line",
        ),
    )
    schema = {
        "type": "object",
        "description": "Extra redis.conf settings, e.g. {maxmemory-policy: allkeys-lru, hz: 10}."
        " Keys the operator manages or that are unsafe are refused: "
        + ", ".join(FORBIDDEN_CONFIG_KEYS)
        + ". The values of common keys (memory sizes, numbers, yes/no, enums) are checked: "
        + ", ".join(CONFIG_FORMATS),
        "maxProperties": MAX_CONFIG_KEYS,
        "additionalProperties": value,
    }
    return with_rules(
        schema,
        rule(
            f"self.all(k, k.matches('{CONFIG_KEY_PATTERN}'))",
            "config keys must be redis.conf directive names: letters, digits and '-',"
            " at most 64 characters",
        ),
        rule(
            f"self.all(k, !(k.lowerAscii() in {forbidden}))",
            "config must not set keys the operator manages or that are unsafe (bind, port,"
            " dir, cluster-*, requirepass, masterauth, replicaof, rename-command,"
            " loadmodule, appendonly, ...)",
            # Names the first offending key; a list of them all (filter + join) is refused
            # by the apiserver as too expensive, since map keys have no length bound.
            message_expression=f"'config must not set ' + {first_forbidden}"
            " + ': the operator manages it, or it is unsafe (for cluster-node-timeout use"
            " spec.nodeTimeoutMs, for appendonly spec.persistence.aof)'",
        ),
        *config_format_rules(),
    )


def placement_schema() -> JSON:
    return obj(
        "How Pods are spread over the cluster's nodes and zones.",
        {
            "topologyKey": string(
                "Node label whose values are the failure domains a shard's Pods are kept apart on.",
                max_length=316,
                default=DEFAULT_TOPOLOGY_KEY,
            ),
            "antiAffinity": enum(
                "required: never put two Pods of one shard in the same domain (Pods stay Pending"
                " when there are too few domains); preferred: avoid it when possible.",
                ["required", "preferred"],
                "preferred",
            ),
            "zoneSpread": boolean(
                "Also spread each shard's Pods over topology.kubernetes.io/zone.", True
            ),
        },
        default={},
    )


def consistent_schema() -> JSON:
    return boolean(
        "One point in time across shards: writes pause on every master (CLIENT PAUSE WRITE)"
        " until each shard's snapshot has begun (its fork), usually milliseconds; the status"
        " says how long. Off: each shard's snapshot is its own point in time.",
        False,
    )


def s3_schema() -> JSON:
    return obj(
        "S3-compatible object storage. Each backup goes under <prefix>/<backup name>/ in the"
        " bucket: one object per shard and manifest.json, written last.",
        {
            "bucket": string("The bucket; it must exist.", max_length=63, minLength=3),
            "prefix": string("Where in the bucket; default <namespace>/<cluster>.", max_length=512),
            "endpoint": string(
                "The server's URL (https://...); default AWS's own for the region.",
                max_length=2048,
                pattern="^https?://",
            ),
            "region": string("The region; default us-east-1.", max_length=64),
            "credentialsSecret": obj(
                "A Secret in the cluster's namespace holding the access key and secret key.",
                {
                    "name": string("The Secret's name.", minLength=1),
                    "accessKeyIdKey": string(
                        "Its key holding the access key ID.", default=DEFAULT_ACCESS_KEY
                    ),
                    "secretAccessKeyKey": string(
                        "Its key holding the secret access key.", default=DEFAULT_SECRET_KEY
                    ),
                },
                required=["name"],
            ),
        },
        required=["bucket", "credentialsSecret"],
    )


def spec_schema() -> JSON:
    schema = obj(
        "The Redis Cluster wanted: shards x (1 master + replicasPerShard replicas).",
        {
            "shards": integer(
                "Number of shards (masters); the 16384 slots are split evenly among them."
                " Cannot decrease yet.",
                default=DEFAULT_SHARDS,
                minimum=1,
                maximum=MAX_SHARDS,
            ),
            "replicasPerShard": integer(
                "Replicas of each shard's master; 0 means no failover.",
                default=DEFAULT_REPLICAS,
                minimum=0,
                maximum=MAX_REPLICAS,
            ),
            "image": with_rules(
                string(
                    "Server image: Redis 7.x (redis:7...) or Valkey 8/9 (valkey/valkey:8... or"
                    " :9...), optionally from another registry.",
                    max_length=512,
                    default=DEFAULT_IMAGE,
                ),
                rule(f"self.matches('{IMAGE_PATTERN}')", IMAGE_MESSAGE),
            ),
            "resources": resources_schema(),
            "storage": storage_schema(),
            "persistence": obj(
                "How data is made durable on the node's volume.",
                {
                    "aof": boolean(
                        "Append-only file on (appendonly yes), besides RDB snapshots.", True
                    )
                },
                default={},
            ),
            "auth": obj(
                "The password every node requires (requirepass and masterauth).",
                {
                    "secretName": string(
                        "A Secret in this namespace whose key `password` holds the password;"
                        " absent: the operator generates the Secret <name>-auth.",
                        pattern=DNS_SUBDOMAIN_PATTERN,
                    )
                },
                default={},
            ),
            "config": config_schema(),
            "nodeTimeoutMs": integer(
                "cluster-node-timeout in milliseconds: how long a node may be unreachable before"
                " it is considered failed.",
                default=DEFAULT_NODE_TIMEOUT_MS,
                minimum=MIN_NODE_TIMEOUT_MS,
                maximum=MAX_NODE_TIMEOUT_MS,
            ),
            "placement": placement_schema(),
            "pvcRetention": enum(
                "What happens to the volumes when the RedisCluster is deleted.",
                ["Retain", "Delete"],
                "Retain",
            ),
            "allowDisruptionWithoutReplicas": boolean(
                "With replicasPerShard 0 each Pod holds the only copy of its shard's data, so"
                " its PodDisruptionBudget allows no voluntary disruption (a drain waits);"
                " true lets drains evict such Pods anyway.",
                False,
            ),
            "networkPolicy": obj(
                "A NetworkPolicy on the cluster's Pods: they reach each other on every port (the"
                " cluster bus, replication); the client port is open to the operator's namespace"
                " and to `clients`; nothing else gets in. Enforced where the cluster's network"
                " plugin enforces NetworkPolicy.",
                {
                    "enabled": boolean("Create the NetworkPolicy <name>-network.", True),
                    "clients": {
                        "type": "array",
                        "description": "Who may reach the client port: NetworkPolicyPeer objects"
                        " (podSelector, namespaceSelector, ipBlock). Default: every Pod of this"
                        " namespace.",
                        "default": [{"podSelector": {}}],
                        "maxItems": 32,
                        "items": with_rules(
                            obj(
                                "A NetworkPolicyPeer.",
                                {
                                    "podSelector": selector_schema(
                                        "Pods (in this namespace, or in the namespaceSelector's)."
                                    ),
                                    "namespaceSelector": selector_schema("Namespaces."),
                                    "ipBlock": obj(
                                        "Addresses outside the cluster.",
                                        {
                                            "cidr": string("A CIDR such as 10.0.0.0/8."),
                                            "except": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                                "description": "CIDRs left out.",
                                            },
                                        },
                                        required=["cidr"],
                                    ),
                                },
                            ),
                            rule(
                                "has(self.podSelector) || has(self.namespaceSelector)"
                                " || has(self.ipBlock)",
                                "a peer has podSelector, namespaceSelector or ipBlock",
                            ),
                        ),
                    },
                },
                default={},
            ),
            "metrics": obj(
                "Prometheus metrics of every node: a redis_exporter sidecar in each Redis Pod,"
                " serving port 9121 (named `metrics`) with the cluster's credentials (from the"
                " Secret, never in its arguments). Turning it on or off rolls the Pods.",
                {
                    "enabled": boolean("Run the sidecar.", True),
                    "image": string(
                        "The exporter's image.", max_length=512, default=DEFAULT_EXPORTER_IMAGE
                    ),
                    "resources": resources_schema(
                        "CPU and memory of the sidecar; default requests {cpu: 10m, memory:"
                        " 32Mi}, limits {memory: 128Mi}."
                    ),
                },
                default={},
            ),
            "restoreFrom": with_rules(
                obj(
                    "Start from a backup: once the cluster is formed, every key of the backup is"
                    " loaded into it (any shard count: keys go by slot), TTLs kept; the cluster"
                    " is Ready only when every key is in. Set at creation only. The backup's"
                    " server must be one this image can load (Redis 7 into Valkey, not the"
                    " reverse; an older version into a newer one).",
                    {
                        "backup": string(
                            "A Complete RedisClusterBackup of this namespace.", minLength=1
                        ),
                        "s3": s3_schema(),
                    },
                ),
                rule(
                    "has(self.backup) != has(self.s3)",
                    "restoreFrom takes either backup (a name) or s3 (a backup's place)",
                ),
            ),
            "backup": obj(
                "Scheduled backups: the operator creates a RedisClusterBackup named"
                " <cluster>-<yyyymmddhhmmss> (UTC) each time the schedule is due, and keeps the"
                " newest `keep` complete ones: older ones are deleted with their objects in the"
                " store. Backups created by hand are never deleted.",
                {
                    "schedule": string(
                        "When: cron's 5 fields (minute hour day month weekday), 6 with seconds"
                        " first, or @daily, @hourly, ...; UTC.",
                        max_length=128,
                        minLength=1,
                    ),
                    "keep": integer(
                        "How many complete scheduled backups to keep.",
                        default=DEFAULT_BACKUPS_KEPT,
                        minimum=1,
                        maximum=1000,
                    ),
                    "consistent": consistent_schema(),
                    "s3": s3_schema(),
                },
                required=["schedule", "s3"],
            ),
            "updateStrategy": obj(
                "How spec changes reach running Pods: a rolling restart, replicas first, each"
                " master after a graceful failover to an in-sync replica; settings the server"
                " takes at run time by CONFIG SET, with no restart.",
                {
                    "paused": boolean(
                        "Stop the rolling restart after the Pod in progress; false resumes it.",
                        False,
                    )
                },
                default={},
            ),
        },
        default={},
    )
    # Transition rules: checked on updates only, when the field is in both old and new object.
    # The has() guards are needed because the apiserver also checks the rules against `default`.
    return with_rules(
        schema,
        rule(
            "has(self.storage) || !has(self.replicasPerShard) || !has(oldSelf.replicasPerShard)"
            " || self.replicasPerShard > 0 || oldSelf.replicasPerShard == 0",
            "in cache mode (no storage) the replicas hold the only other copy of the data:"
            " replicasPerShard cannot drop to 0",
            message_expression="'in cache mode (no storage) the replicas hold the only other"
            " copy of the data: replicasPerShard cannot drop to 0 (was %d)'"
            ".format([oldSelf.replicasPerShard])",
            field_path=".replicasPerShard",
        ),
        rule(
            "has(self.restoreFrom) == has(oldSelf.restoreFrom)"
            " && (!has(self.restoreFrom) || self.restoreFrom == oldSelf.restoreFrom)",
            "restoreFrom is set when the cluster is created and cannot change",
            field_path=".restoreFrom",
        ),
        rule(
            "has(self.storage) == has(oldSelf.storage)",
            "storage cannot be added or removed after creation; create a new RedisCluster",
            field_path=".storage",
        ),
    )


# -- status --------------------------------------------------------------------------------------


def condition_schema() -> JSON:
    """A metav1.Condition, as controller-gen publishes it."""
    return obj(
        "One aspect of the cluster's state.",
        {
            "type": string("Condition type in CamelCase, e.g. Ready.", max_length=316),
            "status": enum("True, False or Unknown.", ["True", "False", "Unknown"]),
            "reason": string(
                "Why, in CamelCase.",
                max_length=1024,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": string("Why, for humans.", max_length=32768),
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed.",
            },
            "observedGeneration": integer(
                "metadata.generation this condition was computed from.", format="int64", minimum=0
            ),
        },
        required=["type", "status", "lastTransitionTime", "reason", "message"],
    )


def shard_status_schema() -> JSON:
    return obj(
        "One shard as last observed.",
        {
            "index": integer("Shard number, from 0.", minimum=0),
            "master": string("Pod that is the shard's master."),
            "replicas": {
                "type": "array",
                "description": "Pods replicating the master.",
                "items": string("Pod name."),
            },
            "slots": string("Slot ranges the master serves, e.g. 0-5460.", max_length=4096),
        },
        required=["index"],
    )


def status_schema() -> JSON:
    return obj(
        "What the operator last observed; written only by the operator.",
        {
            "phase": string(
                "Pending, Bootstrapping, Ready, Healing, Resharding, Updating, Restoring (keys of"
                " spec.restoreFrom still to load), Stopped, or Failed (the spec cannot be built,"
                " or the restore cannot be done).",
                max_length=64,
            ),
            "readyNodes": string("Ready nodes out of wanted, e.g. 6/6.", max_length=32),
            "observedGeneration": integer(
                "metadata.generation the status describes.", format="int64"
            ),
            "conditions": {
                "type": "array",
                "description": "Conditions, one per type.",
                "items": condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "shards": {
                "type": "array",
                "description": "Each shard's master, replicas and slots.",
                "items": shard_status_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["index"],
            },
            "restore": obj(
                "The restore of spec.restoreFrom.",
                {
                    "phase": string("Pending, Running, Complete or Failed.", max_length=32),
                    "message": string("What happens now, or why it failed.", max_length=1000),
                    "source": string("The backup's place.", max_length=2048),
                    "snapshotsDone": {
                        "type": "array",
                        "description": "The backup's shards whose keys are all in.",
                        "items": integer("A shard of the backup.", minimum=0),
                    },
                    "snapshots": integer("The backup's shards.", minimum=0),
                    "keys": integer("Keys loaded so far.", format="int64", minimum=0),
                },
            ),
            "migration": obj(
                "A resharding in progress (absent otherwise): slots and keys moved since it"
                " began, and slots still to move.",
                {
                    "slotsMoved": integer("Slots moved so far.", format="int64"),
                    "slotsToMove": integer("Slots still to move.", format="int64"),
                    "keysMoved": integer("Keys moved so far.", format="int64"),
                },
            ),
            "currentRevision": string(
                "The revision the Pods not yet updated run (the update revision once all are).",
                max_length=64,
            ),
            "updateRevision": string(
                "The revision the spec defines (the Pod template's redkube.io/revision).",
                max_length=64,
            ),
            "updatedNodes": string(
                "Pods on the update revision out of all, e.g. 4/6.", max_length=32
            ),
            "message": string("The latest problem or action, for humans.", max_length=32768),
            # Unbounded on purpose: a status the schema refuses would not be written at all.
            "problems": {
                "type": "array",
                "description": "Everything that keeps the cluster from being Ready, first ones"
                " first (message names the first and counts the others).",
                "items": {"type": "string"},
            },
        },
    )


# -- the resource --------------------------------------------------------------------------------


def root_schema() -> JSON:
    schema = obj(
        "A Redis Cluster (Redis 7.x or Valkey 8/9) run by the redkube operator.",
        {
            "apiVersion": {"type": "string", "description": "API version."},
            "kind": {"type": "string", "description": "RedisCluster."},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    )
    # Only the root may look at metadata (name and generateName); no fieldPath allowed there.
    return with_rules(
        schema,
        rule(
            f"self.metadata.name.matches('{NAME_PATTERN}')",
            "metadata.name must be 1-40 lowercase letters, digits or '-', starting with a letter"
            " (Pods are named <name>-<shard>-<ordinal>)",
        ),
    )


def printer_columns() -> list[JSON]:
    return [
        {"name": "Shards", "type": "integer", "jsonPath": ".spec.shards"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicasPerShard"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.readyNodes"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def namespaced_definition(
    kind: str, plural: str, short_name: str, columns: list[JSON], schema: JSON
) -> JSON:
    """A CustomResourceDefinition of the redkube group: one served version, a status
    subresource, in the `redkube` category."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def custom_resource_definition() -> JSON:
    """The CustomResourceDefinition `redisclusters.redkube.io`."""
    return namespaced_definition(KIND, PLURAL, SHORT_NAME, printer_columns(), root_schema())


def crd_yaml() -> str:
    """The CRD as YAML (JSON is YAML), as `deploy/crd.yaml` holds it."""
    header = (
        "# Generated by `python -m redkube.kubernetes.resources > deploy/crd.yaml`; do not edit.\n"
    )
    return header + json.dumps(custom_resource_definition(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(crd_yaml())
