"""Outbound HTTP that cannot be pointed at the inside.

Every request resolves the target's host itself and refuses it unless every address is
public (``ipaddress.is_global``: no loopback, private, link-local, CGNAT, reserved, multicast or
unspecified ranges, IPv4-mapped and NAT64 IPv6 unwrapped), then connects to the address it
checked (no second DNS lookup to rebind), with TLS still verified against the host name.
Only method-preserving redirects (307, 308) are followed, at most three, each re-checked; any
other redirect is refused. ``allow_private`` switches the address check off (tests, a LAN).
``GuardedTransport`` applies the same check to an ``httpx.AsyncClient`` (the pulls from
counterparts' APIs), which follows no redirect at all.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from anyio import to_thread

from app.errors import HookledgerError

MAX_REDIRECTS = 3
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_TUNNELS = (ipaddress.ip_network("2002::/16"), ipaddress.ip_network("2001::/32"))  # 6to4, Teredo
_IETF_V4 = ipaddress.ip_network("192.0.0.0/24")


class BlockedTarget(HookledgerError):
    """The target may not be reached: a non-public address, a bad URL or redirect."""


class Unresolvable(HookledgerError):
    """The host name did not resolve (maybe for now): retryable, nothing was sent."""


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
    """Only plainly global unicast: IPv6 must be in 2000::/3 and not a tunnel (6to4, Teredo)
    that embeds some other address; is_global alone lets several such forms through."""
    plain = _unwrap(addr)
    if isinstance(plain, ipaddress.IPv6Address):
        if plain not in _GLOBAL_UNICAST or any(plain in net for net in _TUNNELS):
            return False
    elif plain in _IETF_V4:
        return False
    return plain.is_global and not plain.is_multicast  # is_global counts some multicast


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """Return an address of ``host`` to connect to; raise ``BlockedTarget`` if any is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise BlockedTarget(f"bad host name {host!r}") from exc
    except OSError as exc:  # socket.gaierror, including EAI_AGAIN: a DNS blip is retryable
        reason = exc.strerror or str(exc)  # the resolver's words, without its "[Errno -2]"
        raise Unresolvable(f"cannot resolve {host!r}: {reason}") from exc
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
    first = None
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError as exc:
                # The path and query may hold a token: name only the host.
                raise BlockedTarget(f"bad port in the URL of host {parts.hostname!r}") from exc
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
                raise BlockedTarget(
                    f"not a plain http(s) URL (scheme {parts.scheme!r}, host {parts.hostname!r})"
                )
            if first is None:
                first = parts
            elif (parts.scheme, parts.hostname) != (first.scheme, first.hostname):
                # The body carries a secret (4pass) or a signature: never hand it to another
                # origin, nor downgrade https to http.
                raise BlockedTarget(f"redirect to another origin refused: {url[:200]}")
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


class GuardedTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport that resolves each request's host itself, refuses it
    unless every address is public (``resolve``; ``allow_private`` switches that off) and
    connects to the address it checked, keeping the Host header and TLS's server name. Raises
    ``BlockedTarget`` or ``Unresolvable`` before anything is sent."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpx.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise BlockedTarget(
                f"not a plain http(s) URL (scheme {url.scheme!r}, host {url.host!r})"
            )
        port = url.port or (443 if url.scheme == "https" else 80)
        host = url.host
        ip = await to_thread.run_sync(
            lambda: resolve(host, port, allow_private=self._allow_private)
        )
        request.url = url.copy_with(host=ip)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
