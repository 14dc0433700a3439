"""The operator's probes, on `--health-port` (the Deployment's liveness and readiness).

- `/healthz`: the event loop answers (a hung loop fails it, and the kubelet restarts the Pod).
- `/readyz`: the operator reached the Kubernetes API lately (its last Lease read or write, for
  the leader and the standby alike); without leader election, once it started serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web


class Health:
    def __init__(self, last_contact: Callable[[], float | None], stale_after: float) -> None:
        """``last_contact``: the monotonic time the API last answered (None: never yet)."""
        self.last_contact = last_contact
        self.stale_after = stale_after
        self._runner: web.AppRunner | None = None

    def ready(self) -> tuple[bool, str]:
        contact = self.last_contact()
        if contact is None:
            return False, "the Kubernetes API has not answered yet"
        age = time.monotonic() - contact
        if age > self.stale_after:
            return False, f"the Kubernetes API last answered {age:.0f}s ago"
        return True, "ok"

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, why = self.ready()
        return web.Response(text=why + "\n", status=200 if ready else 503)

    async def start(self, port: int, host: str = "0.0.0.0") -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
