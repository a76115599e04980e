"""X-Forwarded-For over real HTTP: a real ``hookledger web`` (uvicorn) process, real TCP peers.

A client on 127.0.0.2 is an untrusted peer (``trusted_proxies`` trusts 127.0.0.1/32 and a
second proxy tier in 10.0.0.0/8); a client on 127.0.0.1 plays the trusted proxy. Through the
real server this also proves uvicorn's own proxy-header handling is off (it would trust
127.0.0.1 and rewrite the peer before hookledger judges it).

Already covered elsewhere, in process (ASGI): tests/integration/test_auth.py
``test_forwarded_for_is_believed_only_from_trusted_proxies`` (a spoofing untrusted peer, a
relayed client, a forged left-most entry), tests/integration/test_bad_input.py
``test_a_second_forwarded_for_line_cannot_smuggle_an_allowed_address``, and the pure rules in
tests/unit/test_netaddr.py.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import REDIS_URL, _unavailable
from tests.processes import web_server
from tests.support import (
    FINANCE_SECRET,
    HTX_SECRET,
    TEST_CONFIG,
    body_of,
    htx_headers,
    htx_update,
    upgrade_schema,
)

pytestmark = pytest.mark.slow

UNTRUSTED = "127.0.0.2"  # a loopback address, but not in trusted_proxies: any outside client
PROXY = "127.0.0.1"  # our reverse proxy


@contextmanager
def _serve(directory: Path, trusted_proxies: str) -> Iterator[str]:
    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        redis.flushdb()
    except (RedisError, OSError):
        _unavailable("Redis")
    config = directory / "hookledger.toml"
    config.write_text(
        textwrap.dedent(TEST_CONFIG).replace(
            'trusted_proxies = ["127.0.0.1/32"]', f"trusted_proxies = {trusted_proxies}"
        )
    )
    assert f"trusted_proxies = {trusted_proxies}" in config.read_text()
    env = {
        **os.environ,
        "HOOKLEDGER_CONFIG": str(config),
        "HOOKLEDGER_DATABASE_URL": upgrade_schema(f"sqlite:///{directory}/ledger.db"),
        "HOOKLEDGER_REDIS_URL": REDIS_URL,
        "TEST_HTX_SECRET": HTX_SECRET,
        "TEST_FINANCE_SECRET": FINANCE_SECRET,
        "HOOKLEDGER_LOG_FORMAT": "json",
    }
    try:
        with web_server(env, workers=1) as base:
            yield base
    finally:
        redis.flushdb()
        redis.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One web server for the module (the property does not depend on the database), with a
    proxy on loopback and a second proxy tier in 10.0.0.0/8."""
    with _serve(tmp_path_factory.mktemp("xff"), '["127.0.0.1/32", "10.0.0.0/8"]') as base:
        yield base


@pytest.fixture(scope="module")
def server_behind_remote_proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose only trusted proxies are in 10.0.0.0/8: loopback is an ordinary client."""
    with _serve(tmp_path_factory.mktemp("xff-remote"), '["10.0.0.0/8"]') as base:
        yield base


def _post(
    base: str, peer: str, source: str, headers: list[tuple[str, str]], order_id: int
) -> httpx.Response:
    """POST a correctly signed HTX callback from ``peer`` (a real local TCP address)."""
    body = body_of(htx_update(order_id, "filled", "1", "100", "0"))
    signed = list(htx_headers(body).items())
    transport = httpx.HTTPTransport(local_address=peer)
    with httpx.Client(base_url=base, transport=transport, timeout=10) as client:
        return client.post(f"/hooks/{source}", content=body, headers=[*signed, *headers])


XFF = "x-forwarded-for"

CASES = [
    # (id, peer, source, extra headers, expected status)
    # An untrusted peer: whatever it claims about itself is ignored.
    ("untrusted-no-header", UNTRUSTED, "restricted", [], 403),
    ("untrusted-claims-allowed-client", UNTRUSTED, "restricted", [(XFF, "203.0.113.9")], 403),
    (
        "untrusted-claims-a-proxied-allowed-client",
        UNTRUSTED,
        "restricted",
        [(XFF, "203.0.113.9, 127.0.0.1")],
        403,
    ),
    (
        "untrusted-two-header-lines",
        UNTRUSTED,
        "restricted",
        [(XFF, "203.0.113.9"), (XFF, "203.0.113.10")],
        403,
    ),
    (
        "untrusted-mapped-ipv6-claim",
        UNTRUSTED,
        "restricted",
        [(XFF, "::ffff:203.0.113.9")],
        403,
    ),
    (
        "untrusted-forwarded-header",
        UNTRUSTED,
        "restricted",
        [("forwarded", "for=203.0.113.9")],
        403,
    ),
    ("untrusted-x-real-ip", UNTRUSTED, "restricted", [("x-real-ip", "203.0.113.9")], 403),
    # auth = "none" with allow_ips = 127.0.0.1/32: claiming to be the loopback proxy is no key.
    ("untrusted-claims-loopback-on-open-source", UNTRUSTED, "open", [(XFF, "127.0.0.1")], 403),
    ("untrusted-no-header-on-open-source", UNTRUSTED, "open", [], 403),
    # Our proxy on 127.0.0.1: its X-Forwarded-For is believed, walked from the right.
    ("proxy-relays-allowed-client", PROXY, "restricted", [(XFF, "203.0.113.9")], 200),
    (
        "proxy-relays-mapped-ipv6-allowed-client",
        PROXY,
        "restricted",
        [(XFF, "::ffff:203.0.113.9")],
        200,
    ),
    (
        "two-trusted-proxies-relay-allowed-client",
        PROXY,
        "restricted",
        [(XFF, "203.0.113.9, 10.1.2.3")],
        200,
    ),
    (
        "client-forged-left-entry-behind-two-proxies",
        PROXY,
        "restricted",
        [(XFF, "203.0.113.9, 198.51.100.7, 10.1.2.3")],
        403,
    ),
    ("client-forged-left-entry", PROXY, "restricted", [(XFF, "203.0.113.9, 198.51.100.7")], 403),
    (
        "proxy-appends-its-own-line",
        PROXY,
        "restricted",
        [(XFF, "203.0.113.9"), (XFF, "198.51.100.7")],
        403,
    ),
    ("garbage-hop-stops-at-the-proxy", PROXY, "restricted", [(XFF, "203.0.113.9, junk")], 403),
    ("proxy-relays-outside-client-to-open", PROXY, "open", [(XFF, "198.51.100.7")], 403),
    ("proxy-itself-on-open-source", PROXY, "open", [], 200),
]


@pytest.mark.parametrize(
    ("order_id", "peer", "source", "headers", "expected"),
    [(7000 + n, *case[1:]) for n, case in enumerate(CASES)],
    ids=[case[0] for case in CASES],
)
def test_forwarded_for_over_real_http(server, order_id, peer, source, headers, expected):
    response = _post(server, peer, source, headers, order_id)
    assert response.status_code == expected, response.text
    if expected == 403:
        body = response.json()
        assert body["error"] == "forbidden"
        assert body["message"]
    else:
        assert response.json()["status"] in {"accepted", "duplicate"}


@pytest.mark.parametrize(
    ("order_id", "source", "headers", "expected"),
    [
        (7100, "restricted", [(XFF, "203.0.113.9")], 403),
        (7101, "open", [(XFF, "198.51.100.7")], 200),  # the peer 127.0.0.1 is what counts
        (7102, "open", [], 200),
    ],
    ids=["loopback-spoof-refused", "loopback-header-ignored", "loopback-plain"],
)
def test_only_trusted_proxies_decide_not_the_http_server(
    server_behind_remote_proxies, order_id, source, headers, expected
):
    """uvicorn trusts 127.0.0.1's X-Forwarded-For by default; hookledger runs it with proxy
    headers off, so when 127.0.0.1 is not in ``trusted_proxies`` its header counts for nothing."""
    response = _post(server_behind_remote_proxies, PROXY, source, headers, order_id)
    assert response.status_code == expected, response.text
