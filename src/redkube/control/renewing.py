"""Certificates renewed before they expire and loaded by the running servers, with no restart.

Every so often (a twentieth of a certificate's life, at most a minute) each node's certificate
and redkube's own client certificate are issued again when due (``Authority.issue`` decides:
the last third of its life, a new address, another CA). A running node then loads its new files
with one ``CONFIG SET tls-cert-file ... tls-key-file ...`` (both at once, so it never pairs a new
certificate with the old key): Redis and Valkey rebuild their TLS context on it, for new
connections; those open keep theirs. A node that is down loads the new files when it starts.
"""

from __future__ import annotations

import asyncio

from redkube.admin.connections import AdminError
from redkube.control.supervisor_tasks import SupervisorTask
from redkube.model.members import MemberState
from redkube.platform.certificates import lifetime

MAX_INTERVAL_S = 60.0


class CertificateRenewal(SupervisorTask):
    what = "certificate renewal"

    def _setup(self) -> None:
        self.interval_s = min(MAX_INTERVAL_S, lifetime().total_seconds() / 20)
        self._unloaded: set[str] = set()  # renewed on disk, not yet loaded by the server

    async def once(self) -> None:
        authority = self._layout.authority
        client = self._layout.client_pair
        name = f"redkube.{self._layout.name}"
        if await asyncio.to_thread(authority.issue, client, name):
            self._record("renewed redkube's client certificate")
        for member in self._platform.members():
            address = member.address
            if address is None:
                continue
            pair = self._layout.node_pair(member.name)
            if await asyncio.to_thread(authority.issue, pair, member.name, (address.host,)):
                self._unloaded.add(member.name)
            if member.name not in self._unloaded or member.state is not MemberState.RUNNING:
                continue
            try:
                await self._pool.client(address).command(
                    "CONFIG", "SET", "tls-cert-file", str(pair.cert), "tls-key-file", str(pair.key)
                )
            except AdminError as error:
                self._record(f"{member.name} could not load its renewed certificate: {error}")
                continue
            self._unloaded.discard(member.name)
            self._record(f"{member.name} renewed its certificate and loaded it (no restart)")
