"""One Pod on a test-bed node: its containers as sandboxed processes, and its status.

A `PodWorker` thread owns one Pod from binding to deletion. Its loop is level-triggered: each
pass compares the latest Pod object with the processes it runs, takes what steps are due
(set up volumes, run the next init container, start or restart a container, run due probes,
stop everything on deletion) and publishes the status a kubelet would publish.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redkube.testbed import events
from redkube.testbed.apiclient import JSON, ApiClient, ApiError, timestamp
from redkube.testbed.environments import ConfigError, container_env, expand, fetcher
from redkube.testbed.images import Image, ImageError, resolve
from redkube.testbed.probes import ProbeTracker, run_probe
from redkube.testbed.sandboxes import Mount, Sandbox, enter_argv, launch_argv
from redkube.testbed.volumes import VolumeNotReady, materialise

log = logging.getLogger("redkube.testbed.pods")

TICK = 0.2
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
DEFAULT_GRACE = 30


@dataclass
class ContainerRun:
    """What this agent knows of one container across its restarts."""

    spec: JSON
    init: bool
    process: subprocess.Popen[bytes] | None = None
    restart_count: int = 0
    started_once: bool = False
    succeeded: bool = False
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    backoff: float = 0.0
    retry_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    readiness: ProbeTracker | None = None
    liveness: ProbeTracker | None = None
    startup: ProbeTracker | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_path(self, pod_dir: Path, previous: bool = False) -> Path:
        count = self.restart_count - (1 if previous else 0)
        return pod_dir / "logs" / self.name / f"{count}.log"

    def back_off(self, now: float) -> None:
        self.backoff = BACKOFF_INITIAL if self.backoff == 0 else min(self.backoff * 2, BACKOFF_MAX)
        self.retry_at = now + self.backoff


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class PodWorker:
    """Runs one Pod; `update` feeds it the newest object, `gone` tells it the Pod was deleted."""

    def __init__(
        self, api: ApiClient, pod: JSON, pod_ip: str, host_ip: str, state_dir: Path
    ) -> None:
        self.api = api
        self.pod = pod
        self.uid = str(pod["metadata"]["uid"])
        self.namespace = str(pod["metadata"]["namespace"])
        self.name = str(pod["metadata"]["name"])
        self.pod_ip = pod_ip
        self.host_ip = host_ip
        self.dir = state_dir / "pods" / self.uid
        self.volumes: dict[str, Path] | None = None
        self.setup_error: tuple[str, str] | None = None
        spec = pod["spec"]
        self.inits = [ContainerRun(c, init=True) for c in spec.get("initContainers") or []]
        self.mains = [ContainerRun(c, init=False) for c in spec.get("containers") or []]
        self.started_at = timestamp()
        self.published: JSON | None = None
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._removed = False
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # --- interface for the agent and the kubelet API ------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def update(self, pod: JSON) -> None:
        with self._lock:
            self.pod = pod

    def gone(self) -> None:
        """The Pod object no longer exists (or the agent stops): kill its containers now."""
        with self._lock:
            self._removed = True

    def container(self, name: str) -> ContainerRun | None:
        for run in (*self.inits, *self.mains):
            if run.name == name:
                return run
        return None

    def log_file(self, container: str, previous: bool) -> Path | None:
        run = self.container(container)
        if run is None:
            return None
        path = run.log_path(self.dir, previous)
        return path if path.exists() else None

    # --- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    pod, removed = self.pod, self._removed
                if removed or pod["metadata"].get("deletionTimestamp"):
                    self._terminate(pod, removed)
                    return
                try:
                    self._step(pod)
                    self._publish(pod)
                except ApiError as error:
                    log.warning("pod %s/%s: API error: %s", self.namespace, self.name, error)
                except Exception:  # a bug here must not take the Pod's containers down
                    log.exception("pod %s/%s: step failed; retrying", self.namespace, self.name)
                    time.sleep(1)
                time.sleep(TICK)
        finally:
            self.finished.set()

    def _step(self, pod: JSON) -> None:
        if self.volumes is None:
            self._set_up(pod)
            if self.volumes is None:
                return
        now = time.monotonic()
        for run in self.inits:
            if run.succeeded:
                continue
            self._drive(pod, run, now)
            return
        for run in self.mains:
            self._drive(pod, run, now)

    def _set_up(self, pod: JSON) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.volumes = materialise(self.api, pod, self.dir, fetcher(self.api, self.namespace))
            self.setup_error = None
        except VolumeNotReady as error:
            self.setup_error = ("ContainerCreating", str(error))
        except ConfigError as error:
            self.setup_error = ("CreateContainerConfigError", str(error))

    def _restart_allowed(self, run: ContainerRun, exit_code: int) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if run.init:
            return exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def _drive(self, pod: JSON, run: ContainerRun, now: float) -> None:
        process = run.process
        if process is not None:
            code = process.poll()
            if code is None:
                self._probe(pod, run, now)
                return
            self._reap(run, _exit_code(code), now)
        if run.succeeded or (run.started_once and not self._can_restart(run)):
            return
        if now < run.retry_at:
            waiting = run.state.get("waiting") or {}
            if waiting.get("reason") == "ErrImagePull":
                run.state = {"waiting": {**waiting, "reason": "ImagePullBackOff"}}
            return
        self._start_container(pod, run, now)

    def _can_restart(self, run: ContainerRun) -> bool:
        terminated = run.last_state.get("terminated") or run.state.get("terminated") or {}
        return self._restart_allowed(run, int(terminated.get("exitCode", 1)))

    def _reap(self, run: ContainerRun, exit_code: int, now: float) -> None:
        """The container's process ended: record it, kill what it left behind, plan a restart."""
        assert run.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.process.pid, signal.SIGKILL)
        run.process = None
        started_at = (run.state.get("running") or {}).get("startedAt", self.started_at)
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": timestamp(),
            "containerID": self._container_id(run),
        }
        message = self._termination_message(run, exit_code)
        if message:
            terminated["message"] = message
        if run.init and exit_code == 0:
            run.ready = run.started = False
            run.succeeded = True
            run.state = {"terminated": terminated}
            return
        if self._record_exit(run, terminated, now):
            self._event(run, "BackOff", "Back-off restarting failed container", warning=True)
            log.info(
                "pod %s/%s: container %s exited with %d; restart in %gs",
                self.namespace,
                self.name,
                run.name,
                exit_code,
                run.backoff,
            )
        else:
            log.info(
                "pod %s/%s: container %s exited with %d",
                self.namespace,
                self.name,
                run.name,
                exit_code,
            )

    def _termination_message(self, run: ContainerRun, exit_code: int) -> str:
        """`terminationMessagePolicy: FallbackToLogsOnError`: a failed container's message is the
        end of its log, as the kubelet takes it (the last 80 lines, at most 2048 bytes). No
        container writes a terminationMessagePath file here, so that part is not modelled."""
        if exit_code == 0 or run.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        try:
            data = run.log_path(self.dir).read_bytes()
        except OSError:
            return ""
        tail = b"".join(data.splitlines(keepends=True)[-80:])[-2048:]
        return tail.decode(errors="replace")

    def _record_exit(self, run: ContainerRun, terminated: JSON, now: float) -> bool:
        """A finished run: a crash-loop back-off when the policy restarts it (returns True),
        else its final terminated state."""
        run.ready = run.started = False
        if not self._restart_allowed(run, int(terminated["exitCode"])):
            run.state = {"terminated": terminated}
            return False
        run.last_state = {"terminated": terminated}
        run.back_off(now)
        run.state = {
            "waiting": {"reason": "CrashLoopBackOff", "message": self._backoff_message(run)}
        }
        return True

    def _event(self, run: ContainerRun, reason: str, message: str, warning: bool = False) -> None:
        kind = "initContainers" if run.init else "containers"
        field = f"spec.{kind}{{{run.name}}}"
        events.record(self.api, self.pod, reason, message, warning=warning, field=field)

    def _backoff_message(self, run: ContainerRun) -> str:
        return (
            f"back-off {run.backoff:g}s restarting failed container={run.name} "
            f"pod={self.name}_{self.namespace}({self.uid})"
        )

    def _container_id(self, run: ContainerRun) -> str:
        return f"testbed://{self.uid}/{run.name}/{run.restart_count}"

    def _start_container(self, pod: JSON, run: ContainerRun, now: float) -> None:
        spec = run.spec
        try:
            image = resolve(str(spec.get("image", "")))
        except ImageError as error:
            run.back_off(now)
            run.state = {"waiting": {"reason": "ErrImagePull", "message": str(error)}}
            self._event(run, "Failed", f"Failed to pull image: {error}", warning=True)
            return
        try:
            self._set_up(pod)  # configMap, secret and token files are refreshed on each start
            if self.volumes is None:
                return
            base = {"PATH": image.path, "HOSTNAME": self.name}
            env = container_env(
                self._with_addresses(pod), spec, fetcher(self.api, self.namespace), base
            )
            mounts = self._mounts(spec)
        except ConfigError as error:
            run.back_off(now)
            run.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
            self._event(run, "Failed", f"Error: {error}", warning=True)
            return
        argv = image.argv(
            [expand(a, env) for a in spec.get("command") or []],
            [expand(a, env) for a in spec.get("args") or []],
        )
        if run.started_once:
            run.restart_count += 1
        run.started_once = True
        if not self._runnable(argv[0], image):
            message = f'exec: "{argv[0]}": executable file not found in $PATH'
            self._reap_start_error(run, message, now)
            return
        security = spec.get("securityContext") or {}
        box = Sandbox(
            root=self.dir / "roots" / run.name,
            hostname=self.name,
            hosts_file=self._hosts_file(pod),
            image=image,
            mounts=mounts,
            working_dir=spec.get("workingDir") or "/",
            read_only_root=bool(security.get("readOnlyRootFilesystem")),
        )
        box.root.mkdir(parents=True, exist_ok=True)
        log_path = run.log_path(self.dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            run.process = subprocess.Popen(
                launch_argv(box, argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run.env = env
        run.state = {"running": {"startedAt": timestamp()}}
        self._event(run, "Started", f"Started container {run.name}")
        started = time.monotonic()
        run.startup = self._tracker(spec.get("startupProbe"), started, passing=False)
        run.readiness = self._tracker(spec.get("readinessProbe"), started, passing=False)
        run.liveness = self._tracker(spec.get("livenessProbe"), started, passing=True)
        run.started = run.startup is None
        run.ready = run.readiness is None and run.started
        log.info(
            "pod %s/%s: started container %s (pid %d)",
            self.namespace,
            self.name,
            run.name,
            run.process.pid,
        )

    def _with_addresses(self, pod: JSON) -> JSON:
        """`pod` as the downward API sees it: the IPs are known before the status says so."""
        status = {
            **(pod.get("status") or {}),
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
        }
        return {**pod, "status": status}

    @staticmethod
    def _tracker(probe: JSON | None, started: float, passing: bool) -> ProbeTracker | None:
        if probe is None:
            return None
        return ProbeTracker(probe, started, passing=passing)

    def _reap_start_error(self, run: ContainerRun, message: str, now: float) -> None:
        stamp = timestamp()
        terminated = {
            "exitCode": 128,
            "reason": "StartError",
            "message": message,
            "startedAt": stamp,
            "finishedAt": stamp,
            "containerID": self._container_id(run),
        }
        self._record_exit(run, terminated, now)
        self._event(run, "Failed", f"Error: {message}", warning=True)

    @staticmethod
    def _runnable(command: str, image: Image) -> bool:
        if "/" in command:
            return os.access(command, os.X_OK)
        known = command in image.commands or command in image.scripts
        return known or shutil.which(command, path=image.path) is not None

    def _mounts(self, spec: JSON) -> list[Mount]:
        assert self.volumes is not None
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            source = self.volumes.get(mount["name"])
            if source is None:
                raise ConfigError(f"volumeMount {mount['name']!r} has no volume")
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
        return mounts

    def _hosts_file(self, pod: JSON) -> str:
        spec = pod["spec"]
        names = [self.name]
        if spec.get("hostname") and spec.get("subdomain"):
            fqdn = f"{spec['hostname']}.{spec['subdomain']}.{self.namespace}.svc.cluster.local"
            names.insert(0, fqdn)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines.append(f"{self.pod_ip}\t{' '.join(names)}")
        for alias in spec.get("hostAliases") or []:
            lines.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}")
        return "\n".join(lines) + "\n"

    # --- probes -------------------------------------------------------------------------------

    def _probe(self, pod: JSON, run: ContainerRun, now: float) -> None:
        assert run.process is not None
        pid = run.process.pid
        if run.startup is not None and not run.started:
            if run.startup.due(now):
                ok, message = run_probe(run.startup.probe, run.spec, pid, self.pod_ip, run.env)
                run.started = run.startup.record(ok, now)
                if run.startup.failed:
                    self._kill_for_restart(run, f"startup probe failed: {message}")
            return
        run.started = True
        if run.liveness is not None and run.liveness.due(now):
            ok, message = run_probe(run.liveness.probe, run.spec, pid, self.pod_ip, run.env)
            if not run.liveness.record(ok, now):
                self._kill_for_restart(run, f"liveness probe failed: {message}")
                return
        if run.readiness is not None:
            if run.readiness.due(now):
                ok, message = run_probe(run.readiness.probe, run.spec, pid, self.pod_ip, run.env)
                run.ready = run.readiness.record(ok, now)
                if not ok:
                    self._event(run, "Unhealthy", f"Readiness probe failed: {message}", True)
        else:
            run.ready = True

    def _kill_for_restart(self, run: ContainerRun, why: str) -> None:
        self._event(run, "Unhealthy", why[:1].upper() + why[1:], warning=True)
        self._event(run, "Killing", f"Container {run.name} failed a probe, will be restarted")
        log.info(
            "pod %s/%s: container %s: %s; restarting", self.namespace, self.name, run.name, why
        )
        self._stop_container(run, self._grace(self.pod))
        assert run.process is not None
        self._reap(run, _exit_code(run.process.returncode), time.monotonic())

    # --- stopping -----------------------------------------------------------------------------

    def _grace(self, pod: JSON) -> float:
        meta = pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        return float(pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE))

    def _stop_container(self, run: ContainerRun, grace: float) -> None:
        """preStop hook, SIGTERM, up to `grace` seconds, then SIGKILL to its process group."""
        process = run.process
        if process is None or process.poll() is not None:
            return
        deadline = time.monotonic() + grace
        hook = ((run.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        if hook and grace > 0:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    enter_argv(process.pid, hook["command"]),
                    env=run.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=max(deadline - time.monotonic(), 0.1),
                    check=False,
                )
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _terminate(self, pod: JSON, removed: bool) -> None:
        grace = 0.0 if removed else self._grace(pod)
        if not removed:
            for run in (*self.inits, *self.mains):
                if run.running:
                    self._event(run, "Killing", f"Stopping container {run.name}")
        stoppers = [
            threading.Thread(target=self._stop_container, args=(run, grace), daemon=True)
            for run in (*self.inits, *self.mains)
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        log.info("pod %s/%s: all containers stopped", self.namespace, self.name)
        if not removed:
            with contextlib.suppress(ApiError):
                self.api.delete(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                )
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- status -------------------------------------------------------------------------------

    def _container_status(self, run: ContainerRun) -> JSON:
        status: JSON = {
            "name": run.name,
            "image": run.spec.get("image", ""),
            "imageID": "",
            "ready": run.ready,
            "restartCount": run.restart_count,
            "started": run.started and run.running,
            "state": run.state,
            "lastState": run.last_state,
        }
        if run.started_once:
            status["containerID"] = self._container_id(run)
        if self.setup_error is not None and not run.started_once:
            reason, message = self.setup_error
            status["state"] = {"waiting": {"reason": reason, "message": message}}
        return status

    def _phase(self) -> str:
        if not all(r.succeeded for r in self.inits):
            init_failed = any("terminated" in r.state and not r.succeeded for r in self.inits)
            return "Failed" if init_failed else "Pending"
        if any(not r.started_once for r in self.mains):
            return "Pending"
        if any(r.running or "terminated" not in r.state for r in self.mains):
            return "Running"
        codes = [int(r.state["terminated"]["exitCode"]) for r in self.mains]
        return "Succeeded" if all(c == 0 for c in codes) else "Failed"

    def _conditions(self, pod: JSON, phase: str) -> list[JSON]:
        inited = all(r.succeeded for r in self.inits)
        ready = phase == "Running" and all(r.ready and r.running for r in self.mains)
        values = {
            "PodReadyToStartContainers": self.volumes is not None,
            "Initialized": inited,
            "ContainersReady": ready,
            "Ready": ready,
        }
        previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        conditions = []
        for kind, value in values.items():
            text = "True" if value else "False"
            old = previous.pop(kind, None)
            stamp = old["lastTransitionTime"] if old and old.get("status") == text else timestamp()
            condition = {"type": kind, "status": text, "lastTransitionTime": stamp}
            if kind in ("Ready", "ContainersReady") and not value:
                waiting = [r.name for r in self.mains if not (r.ready and r.running)]
                condition["reason"] = "ContainersNotReady"
                condition["message"] = f"containers with unready status: [{' '.join(waiting)}]"
            conditions.append(condition)
        conditions.extend(previous.values())  # PodScheduled, and any a controller added
        return conditions

    def _publish(self, pod: JSON) -> None:
        phase = self._phase()
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.started_at,
            "conditions": self._conditions(pod, phase),
            "initContainerStatuses": [self._container_status(r) for r in self.inits],
            "containerStatuses": [self._container_status(r) for r in self.mains],
        }
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [{**c, "lastTransitionTime": ""} for c in status["conditions"]]
        if comparable == self.published:
            return
        self.api.patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status", {"status": status}
        )
        self.published = comparable
