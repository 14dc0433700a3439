"""Loopback addresses for nodes: each its own 127.x.y.z on port 6379, like pod IPs."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable

from redkube.model.addresses import Address

DEFAULT_POOL = "127.0.100.0/24"


class AddressError(Exception):
    """Not enough free addresses, or an address is in use; the message is for the user."""


def address_pool() -> str:
    return os.environ.get("REDKUBE_ADDRESS_POOL", DEFAULT_POOL)


def pool_hosts(pool: str) -> list[str]:
    try:
        network = ipaddress.ip_network(pool, strict=False)
    except ValueError as error:
        raise AddressError(f"address pool {pool!r} is not a network ({error})") from error
    if not isinstance(network, ipaddress.IPv4Network) or not network.is_loopback:
        raise AddressError(f"address pool {pool} must be inside 127.0.0.0/8")
    hosts = [str(h) for h in network.hosts()] if network.prefixlen < 31 else [str(network[0])]
    return [h for h in hosts if h != "127.0.0.1"]


def busy(address: Address) -> bool:
    """True when something already listens on the address's client or cluster-bus port."""
    for port in (address.port, address.bus_port):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address.host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return True
                raise AddressError(f"cannot use {address.host}:{port}: {error.strerror}") from error
    return False


def allocate(
    count: int, pool: str, taken: Iterable[str], start_after: str | None = None
) -> list[str]:
    """``count`` addresses from the pool that no other cluster holds and nothing listens on.

    With ``start_after``, the search starts just past that address and wraps around, so
    addresses given up recently are the last to be handed out again (like a pod network's IPAM,
    which avoids reusing an IP at once)."""
    hosts = pool_hosts(pool)
    if start_after in hosts:
        after = hosts.index(start_after) + 1
        hosts = hosts[after:] + hosts[:after]
    reserved = set(taken)
    free: list[str] = []
    in_use: list[str] = []
    for host in hosts:
        if host in reserved:
            continue
        if busy(Address(host)):
            in_use.append(host)
            continue
        free.append(host)
        if len(free) == count:
            return free
    detail = f"; in use by other processes: {', '.join(in_use[:5])}" if in_use else ""
    raise AddressError(
        f"need {count} free addresses but only {len(free)} are free in {pool}"
        f" ({len(reserved & set(hosts))} held by other redkube clusters{detail}); "
        "set REDKUBE_ADDRESS_POOL to a larger 127.x.y.z/n network"
    )
