"""Network addresses of Redis nodes."""

from __future__ import annotations

from dataclasses import dataclass

REDIS_PORT = 6379


@dataclass(frozen=True, order=True)
class Address:
    host: str
    port: int = REDIS_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bus_port(self) -> int:
        return self.port + 10000

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``; Redis may append ``@busport`` and ``,hostname``."""
        hostport = text.split(",", 1)[0].split("@", 1)[0]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"not an address: {text!r}")
        return cls(host, int(port))
