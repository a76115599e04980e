"""``HOOKLEDGER_REDIS_URL`` forms: redis-py's own, and ``redis+sentinel://``."""

from __future__ import annotations

import pytest

from app.store.redis_conn import SentinelTarget, parse_sentinel_url


def test_plain_urls_are_not_sentinel_urls() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"):
        assert parse_sentinel_url(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://s1:26380,s2,[::1]:26381/mymaster",
            SentinelTarget(
                hosts=(("s1", 26380), ("s2", 26379), ("::1", 26381)),
                service="mymaster",
                db=0,
                username=None,
                password=None,
                sentinel_password=None,
            ),
        ),
        (
            "redis+sentinel://app:p%40ss@s1:26379/hl/3?sentinel_password=sp",
            SentinelTarget(
                hosts=(("s1", 26379),),
                service="hl",
                db=3,
                username="app",
                password="p@ss",
                sentinel_password="sp",
            ),
        ),
        (
            "redis+sentinel://:secret@s1/hl",
            SentinelTarget(
                hosts=(("s1", 26379),),
                service="hl",
                db=0,
                username=None,
                password="secret",
                sentinel_password=None,
            ),
        ),
    ],
)
def test_sentinel_urls_are_parsed(url: str, expected: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis+sentinel:///hl", "at least one sentinel"),
        ("redis+sentinel://s1:26379", "/service"),
        ("redis+sentinel://s1:26379/hl/x", "not a number"),
        ("redis+sentinel://s1:26379/hl/0/extra", "/service"),
        ("redis+sentinel://s1:port/hl", "not host:port"),
    ],
)
def test_malformed_sentinel_urls_name_the_problem(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_sentinel_url(url)


def test_a_malformed_sentinel_url_stops_start_up_naming_the_variable() -> None:
    from app.settings import ConfigError, load_settings

    env = {
        "HOOKLEDGER_CONFIG": "",
        "HOOKLEDGER_REDIS_URL": "redis+sentinel://s1:26379",
    }
    with pytest.raises(ConfigError, match=r"HOOKLEDGER_REDIS_URL: .*/service"):
        load_settings(env)
