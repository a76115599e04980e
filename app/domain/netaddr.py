"""Client addresses: which peer sent the request, and is it allowed.

X-Forwarded-For is believed only when the direct peer is a trusted proxy; then the list is
walked from the right, skipping trusted proxies, and the first untrusted address is the client.
A spoofed left-most entry from an untrusted peer therefore never counts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)  # every receipt parses its peer; addresses are immutable
def parse_ip(text: str) -> IPAddress | None:
    """Return the address in ``text`` (IPv4-mapped IPv6 unwrapped), or ``None`` if it is not one."""
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def in_networks(addr: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    """True when ``addr`` lies in any of ``networks``; ``None`` is in none."""
    if addr is None:
        return False
    return any(addr.version == net.version and addr in net for net in networks)


def request_client(
    peer: str | None, forwarded_lines: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client's address of a request from ``peer`` with these X-Forwarded-For header
    lines. Several lines are one list (RFC 9110): a proxy that appends its own line must not
    let the first, client-written line decide."""
    forwarded = ", ".join(forwarded_lines) if trusted and forwarded_lines else None
    return client_address(peer, forwarded, trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """Return the client's address given the direct peer and its X-Forwarded-For header."""
    peer_addr = parse_ip(peer) if peer else None
    if not forwarded_for or not in_networks(peer_addr, trusted):
        return peer_addr
    hops = [h for h in (part.strip() for part in forwarded_for.split(",")) if h]
    client = peer_addr
    for hop in reversed(hops):
        addr = parse_ip(hop)
        if addr is None:
            return client  # garbage in the chain: stop at the last address we could trust
        client = addr
        if not in_networks(addr, trusted):
            return addr
    return client
