"""``redkube`` entry point: parse arguments, run one command, map failures to an ExitStatus."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from redkube import __version__
from redkube.cli import kubernetes_status, local, rendering_manifests, users
from redkube.cli.exits import ExitStatus, UserError
from redkube.cli.kubernetes_status import kubeconfig_present
from redkube.model.backups import BackupError
from redkube.model.specs import SpecError
from redkube.platform.local.addressing import AddressError
from redkube.platform.local.layout import StateError
from redkube.platform.local.servers import ServerError

DEFAULT_NAME = "redkube"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see: {self.prog} --help)", ExitStatus.USAGE)


def build_parser() -> Parser:
    parser = Parser(prog="redkube", description="Redis Cluster, run like the textbook says.")
    parser.add_argument("--version", action="version", version=f"redkube {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    up = commands.add_parser("up", help="create a local cluster, or bring an existing one back")
    up.add_argument("--name", default=DEFAULT_NAME, help=f"cluster name (default {DEFAULT_NAME})")
    up.add_argument("--shards", type=int, help="number of shards (masters); default 3")
    up.add_argument("--replicas", type=int, help="replicas per shard; default 1")
    up.add_argument(
        "--server",
        help="redis-server or valkey-server binary to run (on a running cluster: a rolling "
        "restart onto it)",
    )
    up.add_argument(
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="a redis.conf setting, repeatable (on a running cluster: live where the server "
        "allows it, else a rolling restart)",
    )
    up.add_argument(
        "--node-timeout", type=int, dest="node_timeout_ms", help="cluster-node-timeout in ms"
    )
    up.add_argument("--hosts", type=int, default=3, help="fake hosts to spread nodes over")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ready")
    up.add_argument(
        "--tls",
        action="store_true",
        help="a new cluster speaks TLS only (clients, replication, cluster bus), with its own CA "
        "under its state directory",
    )
    up.add_argument(
        "--tls-client-certs",
        action="store_true",
        help="with --tls: clients must present a certificate from the cluster's CA",
    )
    up.add_argument(
        "--rotate-password",
        action="store_true",
        help="on a running cluster: a new password, taught to every node before it is used; the "
        "old one keeps working for --password-grace seconds",
    )
    up.add_argument(
        "--password-grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --rotate-password: how long the old password is still accepted (default 60)",
    )
    up.add_argument(
        "--new-address-on-restart",
        action="store_true",
        help="a new cluster's nodes get a new address each time they start again, like "
        "recreated Pods get new IPs (default: each node keeps its address)",
    )
    up.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (default: a free port, "
        "which `redkube status` shows)",
    )

    status = commands.add_parser(
        "status",
        help="shards, slots, roles and links: of a local cluster or a RedisCluster on Kubernetes",
        description="A local cluster by that name is shown first; otherwise, or with -n, "
        "--kubeconfig or --kubernetes, the RedisCluster of that name on Kubernetes.",
    )
    status.add_argument("cluster", nargs="?", help=f"cluster name (default {DEFAULT_NAME})")
    status.add_argument("--name", help=argparse.SUPPRESS)  # the positional's older spelling
    status.add_argument("-n", "--namespace", help="Kubernetes namespace (default: the context's)")
    status.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    status.add_argument(
        "-k",
        "--kubernetes",
        action="store_true",
        help="ask Kubernetes even if a local cluster has this name",
    )

    down = commands.add_parser("down", help="stop a cluster (its data stays unless --purge)")
    down.add_argument("--name", default=DEFAULT_NAME)
    down.add_argument("--purge", action="store_true", help="also delete all data and state")

    kill = commands.add_parser(
        "kill", help="SIGKILL one node (or --all), to watch failover and healing"
    )
    kill.add_argument("node", nargs="?", help="node name, e.g. redkube-0-0")
    kill.add_argument(
        "--all", action="store_true", help="SIGKILL every node of the cluster --name at once"
    )
    kill.add_argument("--name", default=DEFAULT_NAME, help="the cluster, with --all")

    logs = commands.add_parser("logs", help="show a node's server log (or the supervisor's)")
    logs.add_argument("node", nargs="?", help="node name; omit for the supervisor log")
    logs.add_argument("--name", default=DEFAULT_NAME)
    logs.add_argument("-n", "--lines", type=int, default=40)

    commands.add_parser("list", help="list local clusters")

    backup = commands.add_parser(
        "backup",
        help="snapshot every shard (from a replica) into a directory or S3, manifest last",
    )
    backup.add_argument("--name", default=DEFAULT_NAME)
    backup.add_argument(
        "--to",
        required=True,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="a new or empty directory, or an S3 prefix (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY as boto3 reads them)",
    )
    backup.add_argument(
        "--consistent",
        action="store_true",
        help="pause writes on every master while the snapshots begin: one point in time across "
        "shards (each shard's own point in time otherwise)",
    )

    restore = commands.add_parser(
        "restore",
        help="a new cluster from a backup, with any number of shards (keys moved by slot)",
    )
    restore.add_argument("--from", dest="source", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    restore.add_argument("--name", required=True, help="the new cluster (it must not exist)")
    restore.add_argument("--shards", type=int, help="default: as many as the backup has")
    restore.add_argument("--replicas", type=int, help="replicas per shard; default 1")
    restore.add_argument("--server", help="server binary (default: as `redkube up` picks)")
    restore.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ready")

    user = commands.add_parser(
        "user", help="ACL users of a local cluster: set (add or change), delete, list"
    )
    user.add_argument("action", choices=("set", "delete", "list"))
    user.add_argument("user", nargs="?", default="", help="the user's name (set, delete)")
    user.add_argument("--name", default=DEFAULT_NAME, help=f"cluster name (default {DEFAULT_NAME})")
    user.add_argument(
        "--rules", help="ACL rules, e.g. '~app:* +@read' (set: needed for a new user)"
    )
    user.add_argument(
        "--password-file",
        help="a file holding the user's password (set: needed for a new user; a new one for an "
        "existing user rotates it)",
    )
    user.add_argument(
        "--password-grace",
        type=float,
        default=60.0,
        help="with a new --password-file: how long the user's old password still works "
        "(default 60 s)",
    )
    user.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the nodes")

    render = commands.add_parser(
        "render", help="print every Kubernetes object a RedisCluster becomes (like helm template)"
    )
    render.add_argument("-f", "--file", required=True, help="RedisCluster YAML, or - for stdin")
    return parser


def main(argv: Sequence[str] | None = None) -> ExitStatus:
    try:
        args = build_parser().parse_args(argv)
        return dispatch(args)
    except UserError as error:
        return fail(str(error), error.status)
    except SpecError as error:
        return fail(str(error), ExitStatus.USAGE)
    except (StateError, AddressError, ServerError, BackupError) as error:
        return fail(str(error), ExitStatus.ERROR)
    except KeyboardInterrupt:
        return fail("interrupted", ExitStatus.INTERRUPTED)


def dispatch(args: argparse.Namespace) -> ExitStatus:
    handlers = {
        "up": local.up,
        "status": status,
        "down": local.down,
        "kill": local.kill,
        "logs": local.logs,
        "list": local.list_clusters,
        "backup": local.backup,
        "restore": lambda args: local.restore(args, up_arguments(args)),
        "user": users.user,
        "render": rendering_manifests.render,
    }
    return handlers[args.command](args)


def up_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """`redkube up` for the cluster a restore creates: its name, shape and server, the rest as
    `up` defaults them."""
    argv = ["up", "--name", args.name, "--timeout", str(args.timeout)]
    for flag, value in (("--shards", args.shards), ("--replicas", args.replicas)):
        if value is not None:
            argv += [flag, str(value)]
    if args.server:
        argv += ["--server", args.server]
    return build_parser().parse_args(argv)


def status(args: argparse.Namespace) -> ExitStatus:
    """A local cluster when one has the name; a RedisCluster on Kubernetes when asked for one,
    or when no local cluster has the name and a kubeconfig exists."""
    args.name = args.cluster or args.name or DEFAULT_NAME
    asked_for_kubernetes = args.kubernetes or args.namespace or args.kubeconfig
    if not asked_for_kubernetes and (local.exists(args.name) or not kubeconfig_present()):
        return local.status(args)
    return kubernetes_status.status(args, args.name, local.out)


def fail(message: str, status: ExitStatus) -> ExitStatus:
    print(f"redkube: error: {message}", file=sys.stderr)
    return status


def run() -> None:
    sys.exit(main(sys.argv[1:]))
