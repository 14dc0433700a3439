"""A real Kubernetes control plane (etcd, apiserver, controller-manager, scheduler) on loopback.

    with ControlPlane(workdir, bindir) as cp:
        cp.kubectl("get", "namespaces")

Alone it has no Nodes (Pods stay Pending); `realcluster.py` adds real ones.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import TracebackType

from testbed.certificates import Certificates, KeyPair, generate
from testbed.kubeconfigs import write_kubeconfig
from testbed.processes import Component, ControlPlaneError, free_ports

HOST = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = "*,bootstrapsigner,tokencleaner"

ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 90.0
COMPONENT_TIMEOUT = 60.0
STOP_GRACE = 15.0


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as reply:
            body: bytes = reply.read()
            return reply.status == 200 and body.strip() == b"ok"
    except urllib.error.HTTPError:
        return False


def _http_get_json(url: str, context: ssl.SSLContext | None = None) -> object:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError:
        return None


class ControlPlane:
    """Starts and stops one control plane; everything it writes goes under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        bindir: Path,
        *,
        host: str = HOST,
    ) -> None:
        """`host`: the address the apiserver serves and advertises on (the `kubernetes`
        Service's endpoint): loopback alone, the fabric's with real nodes."""
        self.host = host
        self.workdir = workdir.resolve()
        self.bindir = bindir.resolve()
        self.components: list[Component] = []
        self.certificates: Certificates | None = None
        self.apiserver_url = ""
        self.start_seconds: float | None = None
        self._ports: dict[str, int] = {}

    # --- paths -------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self.workdir / "kubeconfigs" / "admin.kubeconfig"

    def _kubeconfig_for(self, name: str) -> Path:
        return self.workdir / "kubeconfigs" / f"{name}.kubeconfig"

    def _binary(self, name: str) -> str:
        path = self.bindir / name
        if not path.is_file():
            raise ControlPlaneError(f"{name} not found in {self.bindir}")
        return str(path)

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def pids(self) -> dict[str, int]:
        """The pid of every component started so far, by name."""
        return {c.name: c.pid for c in self.components if c.pid is not None}

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component and return once all are healthy; on failure stop them all."""
        if self.components:
            raise ControlPlaneError("this control plane was already started")
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop components in reverse start order: SIGTERM, wait `grace`, then SIGKILL."""
        for component in reversed(self.components):
            component.stop(grace)

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.certificates = generate(self.workdir / "pki", apiserver_ips=(self.host,))
        names = ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler")
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._ports["apiserver"] = free_ports(1, self.host)[0]
        self.apiserver_url = f"https://{self.host}:{self._ports['apiserver']}"

        self._start_etcd()
        self._start_apiserver(certs)
        for name, pair in (
            ("admin", certs.admin),
            ("controller-manager", certs.controller_manager),
            ("scheduler", certs.scheduler),
        ):
            write_kubeconfig(
                self._kubeconfig_for(name),
                server=self.apiserver_url,
                ca=certs.ca.cert,
                cert=pair.cert,
                key=pair.key,
                user=name,
            )
        manager = self._start_controller_manager(certs)
        scheduler = self._start_scheduler(certs)
        trust = ssl.create_default_context(cafile=str(certs.ca.cert))
        for component in (manager, scheduler):
            url = f"https://{HOST}:{self._ports[component.name]}/healthz"
            component.wait_until(partial(_https_ok, url, trust), "healthy", COMPONENT_TIMEOUT)
        # Pods need their namespace's `default` ServiceAccount: wait for the controller to make it.
        admin = self._admin_context(certs)
        url = f"{self.apiserver_url}/api/v1/namespaces/default/serviceaccounts/default"
        manager.wait_until(
            lambda: _http_get_json(url, admin) is not None,
            "ready (no `default` ServiceAccount in namespace default)",
            COMPONENT_TIMEOUT,
        )

    def _spawn(self, name: str, argv: Sequence[str]) -> Component:
        component = Component(name, argv, self._log(name))
        self.components.append(component)
        component.start()
        return component

    def _admin_context(self, certs: Certificates) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(certs.ca.cert))
        context.load_cert_chain(str(certs.admin.cert), str(certs.admin.key))
        return context

    def _start_etcd(self) -> None:
        client = f"http://{HOST}:{self._ports['etcd-client']}"
        peer = f"http://{HOST}:{self._ports['etcd-peer']}"
        etcd = self._spawn(
            "etcd",
            [
                self._binary("etcd"),
                "--name=testbed",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=testbed={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            reply = _http_get_json(f"{client}/health")
            return isinstance(reply, dict) and reply.get("health") == "true"

        etcd.wait_until(healthy, "healthy", ETCD_TIMEOUT)

    def _start_apiserver(self, certs: Certificates) -> None:
        apiserver = self._spawn(
            "kube-apiserver",
            [
                self._binary("kube-apiserver"),
                f"--etcd-servers=http://{HOST}:{self._ports['etcd-client']}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                # Real kubelets: reach them at their node IP (there is no DNS for node names).
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--secure-port={self._ports['apiserver']}",
                f"--cert-dir={self.workdir / 'apiserver'}",
                f"--tls-cert-file={certs.apiserver.cert}",
                f"--tls-private-key-file={certs.apiserver.key}",
                f"--client-ca-file={certs.ca.cert}",
                f"--kubelet-client-certificate={certs.kubelet_client.cert}",
                f"--kubelet-client-key={certs.kubelet_client.key}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={certs.service_account_pub}",
                f"--service-account-signing-key-file={certs.service_account_key}",
                "--allow-privileged=true",
                "--enable-bootstrap-token-auth=true",
                "--profiling=false",
            ],
        )
        admin = self._admin_context(certs)
        apiserver.wait_until(
            lambda: _https_ok(f"{self.apiserver_url}/readyz", admin), "ready", APISERVER_TIMEOUT
        )

    def _serving_flags(self, name: str, pair: KeyPair) -> list[str]:
        kubeconfig = self._kubeconfig_for(name)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={self._ports[name]}",
            f"--tls-cert-file={pair.cert}",
            f"--tls-private-key-file={pair.key}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _start_controller_manager(self, certs: Certificates) -> Component:
        return self._spawn(
            "controller-manager",
            [
                self._binary("kube-controller-manager"),
                *self._serving_flags("controller-manager", certs.controller_manager_serving),
                f"--controllers={CONTROLLERS}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={certs.service_account_key}",
                f"--root-ca-file={certs.ca.cert}",
                f"--cluster-signing-cert-file={certs.ca.cert}",
                f"--cluster-signing-key-file={certs.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--cluster-name=redkube-testbed",
            ],
        )

    def _start_scheduler(self, certs: Certificates) -> Component:
        return self._spawn(
            "scheduler",
            [
                self._binary("kube-scheduler"),
                *self._serving_flags("scheduler", certs.scheduler_serving),
            ],
        )

    # --- using it ----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin; with `check`, a non-zero exit raises with its stderr."""
        done = subprocess.run(
            [self._binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited with {done.returncode}:\n{done.stderr.strip()}"
            )
        return done


__all__ = ["ControlPlane", "ControlPlaneError"]
