"""Scratch servers: a throw-away standalone server process on 127.0.0.1 that loads one snapshot
(to check it and count its keys, or to move its keys into a cluster), then goes with its
directory. No password, loopback only, nothing saved."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from pathlib import Path

from redkube.model.addresses import Address

SNAPSHOT = "dump.rdb"


class ScratchServer:
    def __init__(self, binary: str, snapshot: Path) -> None:
        self.binary = binary
        self.snapshot = snapshot
        self.folder = Path(tempfile.mkdtemp(prefix="redkube-scratch-"))
        self.log = self.folder / "server.log"
        self.address = Address("127.0.0.1", _free_port())
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        shutil.copyfile(self.snapshot, self.folder / SNAPSHOT)
        with self.log.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                self.binary,
                "--bind", self.address.host, "--port", str(self.address.port),
                "--dir", str(self.folder), "--dbfilename", SNAPSHOT,
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--protected-mode", "yes", "--loglevel", "warning",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    def exited(self) -> str | None:
        """Why the server is gone (its log's last line), or None while it runs."""
        if self._process is None or self._process.returncode is None:
            return None
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return f"exited with {self._process.returncode}: {lines[-1] if lines else 'no log'}"

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 30)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
