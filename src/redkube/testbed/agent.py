"""The test bed's node agent: a kubelet for several Nodes whose Pods run as local processes.

    python -m redkube.testbed.agent --kubeconfig K --state-dir D --nodes 3 --network 127.250 \\
        --serving-cert C --serving-key K --client-ca CA

It registers the Nodes and keeps them Ready (status and Lease), runs every Pod the scheduler
binds to them (`pods.py`), serves the kubelet API for `kubectl logs` and `kubectl exec`
(`kubeletapi.py`), and provisions PersistentVolumes (`provisioner.py`). SIGTERM stops it: the
containers are killed, the Pod objects are left as they are (like a node going down).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from redkube.testbed.apiclient import JSON, ApiClient, ApiError
from redkube.testbed.kubeletapi import ExecTarget, KubeletServer
from redkube.testbed.nodes import KUBELET_PORT, TestbedNode, testbed_nodes
from redkube.testbed.pods import PodWorker
from redkube.testbed.provisioner import Provisioner
from redkube.testbed.sandboxes import enter_argv

log = logging.getLogger("redkube.testbed.agent")

LEASE_RENEW_SECONDS = 10.0
STATUS_SECONDS = 30.0
RETRY_SECONDS = 1.0
WATCH_SECONDS = 120


class NodeAgent:
    def __init__(self, api: ApiClient, nodes: Sequence[TestbedNode], state_dir: Path) -> None:
        self.api = api
        self.nodes = list(nodes)
        self.state_dir = state_dir
        self.workers: dict[str, PodWorker] = {}
        self._ips: dict[str, tuple[TestbedNode, str]] = {}
        self._lock = threading.Lock()
        self.stop_event = threading.Event()

    # --- the runtime the kubelet API serves ---------------------------------------------------

    def _worker(self, namespace: str, pod: str) -> PodWorker | None:
        with self._lock:
            for worker in self.workers.values():
                if worker.namespace == namespace and worker.name == pod:
                    return worker
        return None

    def log_file(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        worker = self._worker(namespace, pod)
        return None if worker is None else worker.log_file(container, previous)

    def exec_target(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> ExecTarget | None:
        worker = self._worker(namespace, pod)
        run = None if worker is None else worker.container(container)
        if run is None or run.process is None or not run.running:
            return None
        return ExecTarget(argv=enter_argv(run.process.pid, command), env=dict(run.env))

    # --- pods ---------------------------------------------------------------------------------

    def _sync(self, node: TestbedNode, kind: str, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.gone()
            return
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or self.stop_event.is_set():
            return
        ip = node.pool.take()
        worker = PodWorker(self.api, pod, ip, node.ip, self.state_dir)
        with self._lock:
            self.workers[uid] = worker
            self._ips[uid] = (node, ip)
        log.info(
            "node %s: pod %s/%s bound, pod IP %s", node.name, worker.namespace, worker.name, ip
        )
        worker.start()

    def _reap_workers(self) -> None:
        with self._lock:
            done = [uid for uid, w in self.workers.items() if w.finished.is_set()]
            for uid in done:
                del self.workers[uid]
                node, ip = self._ips.pop(uid)
                node.pool.give_back(ip)

    def _watch_pods(self, node: TestbedNode) -> None:
        path = "/api/v1/pods"
        query = {"fieldSelector": f"spec.nodeName={node.name}"}
        while not self.stop_event.is_set():
            try:
                listing = self.api.get(path, query)
                for pod in listing.get("items") or []:
                    self._sync(node, "ADDED", pod)
                version = listing["metadata"]["resourceVersion"]
                for kind, obj in self.api.watch(
                    path, resource_version=version, query=query, timeout_seconds=WATCH_SECONDS
                ):
                    if self.stop_event.is_set():
                        return
                    if kind == "ERROR":
                        break  # e.g. 410 Gone: list again
                    if kind != "BOOKMARK":
                        self._sync(node, kind, obj)
            except ApiError as error:
                log.warning("node %s: pod watch: %s", node.name, error)
                self.stop_event.wait(RETRY_SECONDS)

    # --- nodes --------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self.stop_event.wait(LEASE_RENEW_SECONDS / 4):
            self._reap_workers()
            status_due = time.monotonic() - last_status >= STATUS_SECONDS
            for node in self.nodes:
                try:
                    node.renew_lease(self.api)
                    if status_due:
                        node.post_status(self.api)
                except ApiError as error:
                    log.warning("node %s: heartbeat: %s", node.name, error)
            if status_due:
                last_status = time.monotonic()

    def run(self, cert: Path, key: Path, client_ca: Path) -> None:
        """Serve until `stop_event` is set, then kill every container."""
        provisioner = Provisioner(self.api, self.state_dir / "volumes")
        provisioner.ensure_storage_class()
        servers = []
        for node in self.nodes:
            node.register(self.api)
            node.renew_lease(self.api)
            server = KubeletServer(node.ip, KUBELET_PORT, self, cert, key, client_ca)
            server.start()
            servers.append(server)
            log.info("node %s registered: %s, zone %s", node.name, node.ip, node.zone)
        threads = [
            threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True),
            threading.Thread(
                target=provisioner.run, args=(self.stop_event,), name="provisioner", daemon=True
            ),
        ]
        threads += [
            threading.Thread(target=self._watch_pods, args=(n,), name=f"pods-{n.name}", daemon=True)
            for n in self.nodes
        ]
        for thread in threads:
            thread.start()
        while not self.stop_event.wait(1.0):
            pass
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.gone()
        for worker in workers:
            worker.finished.wait(30)
        for server in servers:
            server.stop()
        log.info("node agent stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redkube.testbed.agent")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--network", default="127.250", help="pod addresses are <network>.<node>.x")
    parser.add_argument("--serving-cert", type=Path, required=True)
    parser.add_argument("--serving-key", type=Path, required=True)
    parser.add_argument("--client-ca", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    agent = NodeAgent(
        ApiClient.from_kubeconfig(args.kubeconfig),
        testbed_nodes(args.nodes, args.network),
        args.state_dir.resolve(),
    )
    signal.signal(signal.SIGTERM, lambda *_: agent.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop_event.set())
    agent.run(args.serving_cert, args.serving_key, args.client_ca)
    return 0


if __name__ == "__main__":
    sys.exit(main())
