"""app.domain.netaddr: which address a request came from, and allowlist membership."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from app.domain.netaddr import IPNetwork, client_address, in_networks, parse_ip

LOCAL_PROXY: list[IPNetwork] = [ip_network("127.0.0.1/32")]
PROXY_CHAIN: list[IPNetwork] = [
    ip_network("127.0.0.1/32"),
    ip_network("10.0.0.0/8"),
    ip_network("fd00::/8"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::ffff:cb00:7107", "203.0.113.7"),
    ],
)
def test_parse_ip(text: str, expected: str) -> None:
    assert parse_ip(text) == ip_address(expected)


@pytest.mark.parametrize(
    "text", ["", "unknown", "203.0.113.7:443", "999.1.1.1", "1.2.3", "\udcff", "a" * 10_000]
)
def test_parse_ip_garbage_is_none(text: str) -> None:
    assert parse_ip(text) is None


def test_untrusted_peer_with_spoofed_forwarded_for_is_the_peer() -> None:
    assert client_address("198.51.100.9", "203.0.113.7", LOCAL_PROXY) == ip_address("198.51.100.9")
    assert client_address("198.51.100.9", "127.0.0.1, 10.0.0.1", PROXY_CHAIN) == ip_address(
        "198.51.100.9"
    )


def test_no_forwarded_for_is_the_peer() -> None:
    assert client_address("127.0.0.1", None, LOCAL_PROXY) == ip_address("127.0.0.1")
    assert client_address("127.0.0.1", "", LOCAL_PROXY) == ip_address("127.0.0.1")


def test_missing_or_unparsable_peer_is_none() -> None:
    assert client_address(None, "203.0.113.7", LOCAL_PROXY) is None
    assert client_address("not-an-ip", "203.0.113.7", LOCAL_PROXY) is None


def test_trusted_peer_gives_the_right_most_untrusted_hop() -> None:
    # The left-most entry is whatever the client claimed; the proxy appended the real one.
    forwarded = "10.9.9.9, 192.0.2.66, 203.0.113.7"
    assert client_address("127.0.0.1", forwarded, LOCAL_PROXY) == ip_address("203.0.113.7")


def test_chain_of_trusted_proxies_is_skipped() -> None:
    forwarded = "192.0.2.66, 203.0.113.7, 10.1.2.3, fd00::5, 10.0.0.1"
    assert client_address("127.0.0.1", forwarded, PROXY_CHAIN) == ip_address("203.0.113.7")


def test_chain_of_only_trusted_hops_gives_the_left_most() -> None:
    assert client_address("127.0.0.1", "10.0.0.2, 10.0.0.1", PROXY_CHAIN) == ip_address("10.0.0.2")


def test_empty_entries_in_the_chain_are_ignored() -> None:
    assert client_address("127.0.0.1", " , 203.0.113.7 ,, ", LOCAL_PROXY) == ip_address(
        "203.0.113.7"
    )


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        # Garbage at the right end: nothing trustworthy beyond the peer itself.
        ("203.0.113.7, garbage", "127.0.0.1"),
        # Garbage behind a trusted hop: stop at that hop, never reach the spoofable part.
        ("203.0.113.7, unknown, 10.0.0.1", "10.0.0.1"),
        ("1.2.3.4:80", "127.0.0.1"),
        ("\udcff", "127.0.0.1"),
    ],
)
def test_garbage_in_the_chain_never_lets_the_left_part_through(
    forwarded: str, expected: str
) -> None:
    assert client_address("127.0.0.1", forwarded, PROXY_CHAIN) == ip_address(expected)


def test_ipv4_mapped_ipv6_peer_is_unwrapped_and_trusted() -> None:
    client = client_address("::ffff:127.0.0.1", "203.0.113.7", LOCAL_PROXY)
    assert client == ip_address("203.0.113.7")


def test_ipv4_mapped_ipv6_hop_is_unwrapped() -> None:
    client = client_address("127.0.0.1", "::ffff:203.0.113.7", LOCAL_PROXY)
    assert client == ip_address("203.0.113.7")
    assert client.version == 4


def test_ipv6_client_behind_ipv4_proxy() -> None:
    assert client_address("127.0.0.1", "[2001:db8::7]", LOCAL_PROXY) == ip_address("2001:db8::7")


def test_in_networks_with_mixed_families() -> None:
    networks: list[IPNetwork] = [ip_network("203.0.113.0/24"), ip_network("2001:db8::/32")]
    assert in_networks(ip_address("203.0.113.200"), networks)
    assert in_networks(ip_address("2001:db8:ffff::1"), networks)
    assert not in_networks(ip_address("203.0.114.1"), networks)
    assert not in_networks(ip_address("2001:db9::1"), networks)
    assert not in_networks(ip_address("::1"), networks)
    assert not in_networks(None, networks)
    assert not in_networks(ip_address("203.0.113.1"), [])


def test_in_networks_v4_mapped_address_matches_v4_network_after_parsing() -> None:
    networks: list[IPNetwork] = [ip_network("203.0.113.0/24")]
    assert in_networks(parse_ip("::ffff:203.0.113.9"), networks)
    # Without unwrapping, an IPv6 address never matches an IPv4 network (and does not raise).
    assert not in_networks(ip_address("::ffff:203.0.113.9"), networks)
