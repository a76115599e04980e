"""Outbound HTTP that cannot be pointed at the inside.

Every request resolves the target's host itself and refuses it unless every address is
public (``ipaddress.is_global``: no loopback, private, link-local, CGNAT, reserved, multicast or
unspecified ranges, IPv4-mapped and NAT64 IPv6 unwrapped), then connects to the address it
checked (no second DNS lookup to rebind), with TLS still verified against the host name.
Only method-preserving redirects (307, 308) are followed, at most three, each re-checked; any
other redirect is refused. ``allow_private`` switches the address check off (tests, a LAN).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

MAX_REDIRECTS = 3
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedTarget(Exception):
    """The target resolves to an address it may not reach, or cannot be resolved."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    text: str
    latency_ms: int


def _unwrap(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    plain = _unwrap(addr)
    return plain.is_global and not plain.is_multicast  # is_global counts some multicast


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """Return an address of ``host`` to connect to; raise ``BlockedTarget`` if any is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedTarget(f"cannot resolve {host!r}: {exc}") from exc
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addrs:
        raise BlockedTarget(f"{host!r} has no address")
    if not allow_private:
        blocked = [str(a) for a in addrs if not is_public(a)]
        if blocked:
            raise BlockedTarget(f"{host!r} resolves to a non-public address ({', '.join(blocked)})")
    return str(addrs[0])


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    allow_private: bool,
) -> Reply:
    """POST ``body`` to ``url`` under the guard. Raises ``BlockedTarget`` or ``httpx.HTTPError``."""
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
    started = time.monotonic()
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BlockedTarget(f"not an http(s) URL: {url[:200]}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            ip = resolve(parts.hostname, port, allow_private=allow_private)
            literal = f"[{ip}]" if ":" in ip else ip
            pinned = urlunsplit(
                (parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, "")
            )
            response = client.post(
                pinned,
                content=body,
                headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
                extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
            )
            if response.status_code in (307, 308) and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            if 300 <= response.status_code < 400:
                raise BlockedTarget(
                    f"redirect {response.status_code} refused (only 307/308 are followed)"
                )
            latency = int((time.monotonic() - started) * 1000)
            return Reply(response.status_code, response.text[:500], latency)
    raise BlockedTarget(f"more than {MAX_REDIRECTS} redirects")
