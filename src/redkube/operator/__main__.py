"""`python -m redkube.operator [--namespace NS ...] [--kubeconfig PATH]`: run the operator.

With leader election (the default) the process first takes the Lease `--leader-election-name`
in `--leader-election-namespace`, and only then starts kopf; while it waits it is a standby.
A leader that cannot renew its Lease stops kopf and exits 1 (Kubernetes restarts the Pod, which
then stands by); on SIGTERM/SIGINT it stops kopf, releases the Lease and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import kopf

from redkube.control.metrics import LoopMetrics, MetricsServer
from redkube.operator.health import Health
from redkube.operator.stalls import watch_stalls
from redkube.platform.kubernetes.api import KubernetesApi
from redkube.platform.kubernetes.credentials import CredentialsError, load_credentials
from redkube.platform.kubernetes.leases import LeaderElector, LeaseNamespaceMissing

PROG = "python -m redkube.operator"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_LOST = 1  # lost leadership: like controller-runtime, exit and let the Pod restart

log = logging.getLogger("redkube.operator")


class UsageError(Exception):
    """A bad flag value, printed as one line."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", action="append", default=[], help="watch only these")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or in-cluster")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--health-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve /healthz and /readyz on this port (default 0: off)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Prometheus metrics at /metrics on this port (default 0: off)",
    )
    election = parser.add_argument_group("leader election")
    election.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        help="act at once, without taking the Lease (only one operator may then run)",
    )
    election.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or "redkube-system",
        help="where the Lease lives (default: $POD_NAMESPACE, else redkube-system)",
    )
    election.add_argument("--leader-election-name", default="redkube-operator")
    election.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS")
    election.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    validate(args)
    return args


def validate(args: argparse.Namespace) -> None:
    for flag in ("lease_duration", "renew_deadline", "retry_period"):
        if not 0 < getattr(args, flag) < math.inf:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    if not args.renew_deadline < args.lease_duration:
        raise UsageError(
            f"--renew-deadline ({args.renew_deadline:g}s) must be shorter than "
            f"--lease-duration ({args.lease_duration:g}s)"
        )
    if not args.retry_period < args.renew_deadline:
        raise UsageError(
            f"--retry-period ({args.retry_period:g}s) must be shorter than "
            f"--renew-deadline ({args.renew_deadline:g}s)"
        )
    for flag in ("health_port", "metrics_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            raise UsageError(
                f"--{flag.replace('_', '-')} must be 0 (off) or a port number, "
                f"not {getattr(args, flag)}"
            )
    if not args.leader_election_name or not args.leader_election_namespace:
        raise UsageError("--leader-election-name and --leader-election-namespace must not be empty")


def identity() -> str:
    """The Lease holder's name: the Pod's, else `<hostname>-<pid>`."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        credentials = load_credentials()
    except CredentialsError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    import redkube.operator.backups  # noqa: F401  (registers the backup handlers with kopf)
    import redkube.operator.handlers as handlers  # registers the handlers with kopf
    from redkube.operator import api_client

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        api = KubernetesApi(credentials)
        api_client.connect(api)  # one client (and one read of the kubeconfig) for all
        return loop.run_until_complete(serve(args, api, handlers.METRICS))
    except LeaseNamespaceMissing as error:
        print(
            f"{PROG}: error: {error}: create it, or pass --leader-election-namespace",
            file=sys.stderr,
        )
        return EXIT_ERROR
    finally:
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


async def serve(args: argparse.Namespace, api: KubernetesApi, metrics: LoopMetrics) -> int:
    elector = None
    if args.leader_election:
        elector = LeaderElector(
            api,
            args.leader_election_namespace,
            args.leader_election_name,
            identity(),
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    started = time.monotonic()
    health = Health(
        (lambda: elector.contact) if elector else (lambda: started),
        stale_after=args.lease_duration,
    )
    if args.health_port:
        await health.start(args.health_port)
    serving = MetricsServer(metrics)
    if args.metrics_port:
        await serving.start("0.0.0.0", args.metrics_port)
    try:
        return await _serve(args, api, elector, metrics)
    finally:
        metrics.leader.set(0)
        await serving.stop()
        await health.stop()


async def _serve(
    args: argparse.Namespace,
    api: KubernetesApi,
    elector: LeaderElector | None,
    metrics: LoopMetrics,
) -> int:
    stop = asyncio.Event()  # kopf's stop flag: a signal before kopf's own handlers, or a loss
    _on_signals(stop.set)
    stalls = asyncio.create_task(watch_stalls(), name="event loop stall watch")
    try:
        return await _serve_kopf(args, api, elector, metrics, stop)
    finally:
        stalls.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stalls


async def _serve_kopf(
    args: argparse.Namespace,
    api: KubernetesApi,
    elector: LeaderElector | None,
    metrics: LoopMetrics,
    stop: asyncio.Event,
) -> int:
    kopf_args: dict[str, Any] = {
        "standalone": True,  # kopf's own peering stays off: the Lease decides who acts
        "clusterwide": not args.namespace,
        "namespaces": args.namespace,
        "stop_flag": stop,
    }
    if elector is None:
        metrics.leader.set(1)
        try:
            await kopf.operator(**kopf_args)
        finally:
            await api.close()
        return EXIT_OK

    try:
        log.info(
            "leader election: %s on lease %s/%s",
            elector.identity, elector.namespace, elector.name,
        )  # fmt: skip
        if not await _unless(stop, elector.acquire()):
            log.info("stopping before leadership")
            return EXIT_OK
        metrics.leader.set(1)
        lost = asyncio.Event()
        # Both tasks exist before kopf starts, so kopf leaves them alone when it stops.
        holding = asyncio.create_task(elector.hold(lost), name="lease renewer")
        grace = args.lease_duration - args.renew_deadline
        relay = asyncio.create_task(_relay(lost, stop, grace), name="leadership loss relay")
        try:
            await kopf.operator(**kopf_args)
        finally:
            _on_signals(lambda: None)  # kopf's handlers would set its finished future again
            for task in (holding, relay):
                task.cancel()
            await asyncio.gather(holding, relay, return_exceptions=True)
            if not lost.is_set():
                await elector.release()
        if lost.is_set():
            log.error("stopped after losing leadership; exiting %d", EXIT_LOST)
            return EXIT_LOST
        return EXIT_OK
    finally:
        await api.close()


async def _unless(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run the coroutine `work` unless `stop` is set first; True if it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopping):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.done() and not task.cancelled():
        task.result()  # raises what acquiring raised
        return True
    return False


async def _relay(lost: asyncio.Event, stop: asyncio.Event, grace: float) -> None:
    """Stop kopf once leadership is lost; if it has not stopped within `grace` (the time left
    before a standby may take the Lease), exit at once rather than act beside a new leader."""
    await lost.wait()
    stop.set()
    await asyncio.sleep(grace)
    log.error("kopf did not stop within %gs of losing leadership; exiting now", grace)
    logging.shutdown()
    os._exit(EXIT_LOST)


def _on_signals(callback: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)


if __name__ == "__main__":
    sys.exit(main())
