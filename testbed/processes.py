"""Long-running child processes with a log file each, free loopback ports, bounded waits."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOG_TAIL_LINES = 30


class ControlPlaneError(RuntimeError):
    """A component failed to start, died, or did not become ready in time."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free on `host` a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux only).

    So a killed test run leaves no control plane behind. Linux sends the signal when the
    *thread* that started the child exits: start control planes from a long-lived thread.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Component:
    """One control-plane binary run as a child process, its output going to `log`."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def error(self, problem: str) -> ControlPlaneError:
        return ControlPlaneError(f"{self.name} {problem}; last lines of {self.log}:\n{self.tail()}")

    def check_alive(self) -> None:
        if self._process is None:
            raise self.error("was never started")
        code = self._process.poll()
        if code is not None:
            raise self.error(f"exited with code {code}")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll `ready` until it returns True; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            self.check_alive()
            with contextlib.suppress(OSError):
                if ready():
                    return
            if time.monotonic() >= deadline:
                raise self.error(f"did not become {what} within {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, grace: float) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; always reaps the process."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)


def pid_alive(pid: int) -> bool:
    """Whether a process (not a zombie) with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
