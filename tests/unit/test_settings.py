"""app.settings: the contract's config loads; unknown keys and bad values name the key."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from app.settings import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    FileConfig,
    load_settings,
    parse_config,
)
from tests.canary import canary

# Canary secrets (tests/canary.py): none may ever show in any output.
HTX_NOW = canary("unit-htx-now")
FINANCE = canary("unit-finance")
FOURPASS = canary("unit-fourpass")
ADMIN = canary("unit-admin")

# Section 1 of the contract (shared/CONTRACT.md), verbatim.
CONTRACT_SAMPLE = """\
[server]
max_body_bytes = 262144            # larger requests get 413 before the body is read whole
trusted_proxies = ["127.0.0.1/32"] # only these peers' X-Forwarded-For is believed

[sources.htx-main]                 # the name is the URL segment: POST /hooks/htx-main
kind = "htx"                       # htx | pingpong | trx-energy
account_id = "1001"                # ledger account when the payload names none
auth = "hmac-sha256"               # hmac-sha256 | standard-webhooks | token | none
secrets = ["${HTX_SECRET}", "previous-secret"]   # any one may match (rotation)
signature_header = "X-Signature"   # hmac-sha256: lowercase hex, optional "sha256=" prefix
timestamp_header = "X-Timestamp"   # optional; Unix seconds; then the signed text is "{timestamp}.{raw body}"
tolerance_s = 300                  # |now - timestamp| allowed, both directions
allow_ips = ["203.0.113.0/24"]     # optional CIDR allowlist on the client address

[api_keys.finance]                 # keys of the accountants' API
key = "ak_finance"
secret = "${FINANCE_API_SECRET}"
accounts = ["1001"]                # ledger accounts this key may read; ["*"] for all

[targets.tw-futures]               # where follow-up signals go
kind = "fourpass"                  # fourpass (seed 000 format) | webhook (Standard Webhooks)
url = "https://signals.example/webhook/TOKEN/order"
secret = "${FOURPASS_SECRET}"
simulation = true

[[rules]]
name = "hedge-btc-fills"
target = "tw-futures"
when = { source_kind = "htx", event = "order.filled", symbol = "btcusdt" }
signal = { action = "short_entry", symbol = "MXFR1", quantity = 1 }
"""

ENV = {
    "HTX_SECRET": HTX_NOW,
    "FINANCE_API_SECRET": FINANCE,
    "FOURPASS_SECRET": FOURPASS,
}

SOURCE = """
[sources.x]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["s"]
"""


def config_error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, ENV if env is None else env)
    return str(info.value)


def test_contract_sample_loads() -> None:
    config = parse_config(CONTRACT_SAMPLE, ENV)
    assert config.server.max_body_bytes == 262_144
    assert config.server.trusted_proxies == (ip_network("127.0.0.1/32"),)

    source = config.sources["htx-main"]
    assert source.kind == "htx"
    assert source.account_id == "1001"
    assert source.auth == "hmac-sha256"
    assert source.secrets == (HTX_NOW, "previous-secret")
    assert source.secret_bytes() == (HTX_NOW.encode(), b"previous-secret")
    assert source.signature_header == "X-Signature"
    assert source.timestamp_header == "X-Timestamp"
    assert source.tolerance_s == 300
    assert source.allow_ips == (ip_network("203.0.113.0/24"),)

    api_key = config.api_keys["finance"]
    assert (api_key.key, api_key.secret, api_key.accounts) == (
        "ak_finance",
        FINANCE,
        ("1001",),
    )

    target = config.targets["tw-futures"]
    assert (target.kind, target.secret, target.simulation) == ("fourpass", FOURPASS, True)
    assert target.url == "https://signals.example/webhook/TOKEN/order"

    (rule,) = config.rules
    assert rule.name == "hedge-btc-fills"
    assert rule.target == "tw-futures"
    assert (rule.when.source_kind, rule.when.event, rule.when.symbol) == (
        "htx",
        "order.filled",
        "btcusdt",
    )
    assert rule.signal is not None
    assert (rule.signal.action, rule.signal.symbol, rule.signal.quantity) == (
        "short_entry",
        "MXFR1",
        1,
    )


def test_env_reference_inside_a_longer_string() -> None:
    config = parse_config(SOURCE.replace('"s"', '"pre-${HTX_SECRET}-post"'), ENV)
    assert config.sources["x"].secrets == (f"pre-{HTX_NOW}-post",)


@pytest.mark.parametrize(
    ("variable", "path"),
    [
        ("HTX_SECRET", "sources.htx-main.secrets[0]"),
        ("FINANCE_API_SECRET", "api_keys.finance.secret"),
        ("FOURPASS_SECRET", "targets.tw-futures.secret"),
    ],
)
def test_unset_variable_names_the_key_and_the_variable(variable: str, path: str) -> None:
    env = {k: v for k, v in ENV.items() if k != variable}
    message = config_error(CONTRACT_SAMPLE, env)
    assert path in message
    assert variable in message
    assert "not set" in message


def test_an_empty_variable_is_set() -> None:
    config = parse_config(CONTRACT_SAMPLE, ENV | {"FOURPASS_SECRET": ""})
    assert config.targets["tw-futures"].secret == ""


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[server]\nmax_body = 1\n", "server.max_body"),
        (SOURCE + 'colour = "red"\n', "sources.x.colour"),
        ("[servers]\nmax_body_bytes = 1\n", "servers"),
        ("[processing]\nretries = 3\n", "processing.retries"),
        (
            CONTRACT_SAMPLE.replace("simulation = true", "simulation = true\nmode = 1"),
            "targets.tw-futures.mode",
        ),
        (
            CONTRACT_SAMPLE.replace('symbol = "btcusdt" }', 'symbol = "btcusdt", side = "buy" }'),
            "rules.0.when.side",
        ),
    ],
)
def test_unknown_keys_are_named(text: str, path: str) -> None:
    message = config_error(text)
    assert f"{path}: unknown key" in message


def test_every_bad_key_is_reported_at_once() -> None:
    message = config_error("[server]\nmax_body = 1\nproxies = []\n")
    assert "server.max_body: unknown key" in message
    assert "server.proxies: unknown key" in message


def sample_with(old: str, new: str) -> str:
    assert old in CONTRACT_SAMPLE
    return CONTRACT_SAMPLE.replace(old, new)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (sample_with('kind = "htx"', 'kind = "binance"'), "sources.htx-main.kind", "htx"),
        (
            sample_with('auth = "hmac-sha256"', 'auth = "basic"'),
            "sources.htx-main.auth",
            "hmac-sha256",
        ),
        (
            SOURCE.replace('auth = "hmac-sha256"', 'auth = "none"'),
            "sources.x",
            "allow_ips",
        ),
        (SOURCE.replace('secrets = ["s"]', ""), "sources.x", "secret"),
        (SOURCE.replace('secrets = ["s"]', "secrets = []"), "sources.x", "secret"),
        (SOURCE.replace('secrets = ["s"]', 'secrets = [""]'), "sources.x", "empty"),
        (
            sample_with('allow_ips = ["203.0.113.0/24"]', 'allow_ips = ["203.0.113.0/33"]'),
            "sources.htx-main.allow_ips",
            "",
        ),
        (
            sample_with('trusted_proxies = ["127.0.0.1/32"]', 'trusted_proxies = ["localhost"]'),
            "server.trusted_proxies",
            "",
        ),
        (sample_with("max_body_bytes = 262144", "max_body_bytes = 0"), "server.max_body_bytes", ""),
        (
            sample_with("tolerance_s = 300", 'tolerance_s = "5m"'),
            "sources.htx-main.tolerance_s",
            "",
        ),
        (
            sample_with('target = "tw-futures"', 'target = "nowhere"'),
            "hedge-btc-fills",
            "nowhere",
        ),
        (
            sample_with('action = "short_entry"', 'action = "sell"'),
            "rules.0.signal.action",
            "",
        ),
        (sample_with("quantity = 1", "quantity = -1"), "rules.0.signal.quantity", ""),
        (
            sample_with('url = "https://signals.example', 'url = "ftp://signals.example'),
            "targets.tw-futures.url",
            "",
        ),
        (sample_with('kind = "fourpass"', 'kind = "email"'), "targets.tw-futures.kind", ""),
        (sample_with("[sources.htx-main]", "[sources.HTX_Main]"), "sources", "HTX_Main"),
        (sample_with('accounts = ["1001"]', "accounts = []"), "api_keys.finance.accounts", ""),
    ],
    ids=[
        "kind-binance",
        "auth-unknown",
        "none-without-allow-ips",
        "hmac-without-secrets",
        "hmac-empty-secrets",
        "empty-secret",
        "bad-cidr",
        "bad-proxy",
        "zero-body",
        "tolerance-text",
        "rule-missing-target",
        "bad-action",
        "negative-quantity",
        "ftp-url",
        "target-kind",
        "bad-source-name",
        "no-accounts",
    ],
)
def test_bad_values_name_the_key(text: str, key: str, words: str) -> None:
    message = config_error(text)
    assert key in message
    assert words in message


@pytest.mark.parametrize("secret", ["whsec_a", "whsec_%%%", "whsec_"])
def test_standard_webhooks_secret_must_be_base64(secret: str) -> None:
    text = SOURCE.replace('"hmac-sha256"', '"standard-webhooks"').replace('"s"', f'"{secret}"')
    message = config_error(text)
    assert "sources.x" in message
    assert "standard-webhooks secret" in message


@pytest.mark.parametrize("secret", ["whsec_not base64 at all!", "my webhook secret"])
def test_standard_webhooks_secret_with_non_base64_characters_is_refused(secret: str) -> None:
    text = SOURCE.replace('"hmac-sha256"', '"standard-webhooks"').replace('"s"', f'"{secret}"')
    message = config_error(text)
    assert "sources.x" in message


def test_standard_webhooks_secret_bytes_are_decoded() -> None:
    text = SOURCE.replace('"hmac-sha256"', '"standard-webhooks"').replace(
        '"s"', '"whsec_ZGVtby1waW5ncG9uZy1zZWNyZXQta2V5LTAwMDAwMA=="'
    )
    source = parse_config(text, {}).sources["x"]
    assert source.secret_bytes() == (b"demo-pingpong-secret-key-000000",)


def test_auth_none_with_allow_ips_is_fine() -> None:
    text = SOURCE.replace('"hmac-sha256"', '"none"').replace(
        'secrets = ["s"]', 'allow_ips = ["10.0.0.0/8", "::1/128"]'
    )
    assert parse_config(text, {}).sources["x"].auth == "none"


def test_invalid_toml_names_the_origin() -> None:
    with pytest.raises(ConfigError, match=r"^my\.toml: not valid TOML"):
        parse_config("[server\n", {}, origin="my.toml")


def test_messages_start_with_the_origin() -> None:
    with pytest.raises(ConfigError, match=r"^prod\.toml: server\.max_body: unknown key"):
        parse_config("[server]\nmax_body = 1\n", {}, origin="prod.toml")


def test_empty_config_uses_defaults() -> None:
    config = parse_config("", {})
    assert config.sources == {}
    assert config.server.max_body_bytes == 262_144
    assert config.processing.retry_delays_s == (5, 30, 120, 600, 1800)


def test_default_trusted_proxies_are_networks() -> None:
    # A default that stayed the str "127.0.0.1/32" made in_networks() raise on X-Forwarded-For.
    assert parse_config("", {}).server.trusted_proxies == (ip_network("127.0.0.1/32"),)
    assert parse_config("[server]\nmax_body_bytes = 1\n", {}).server.trusted_proxies == (
        ip_network("127.0.0.1/32"),
    )


def test_load_settings_without_a_file_uses_the_demo_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert "demo" in settings.config_path
    assert set(settings.sources) >= {"htx-demo", "pingpong-demo", "trx-demo"}
    assert settings.sources["htx-demo"].secrets == ("demo-htx-secret",)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None
    assert settings.admin_token is None
    assert isinstance(settings.file, FileConfig)


def test_load_settings_prefers_hookledger_toml_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hookledger.toml").write_text(CONTRACT_SAMPLE, encoding="utf-8")
    settings = load_settings(ENV)
    assert settings.config_path == "hookledger.toml"
    assert set(settings.sources) == {"htx-main"}


def test_load_settings_reads_hookledger_config_and_urls(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(CONTRACT_SAMPLE, encoding="utf-8")
    settings = load_settings(
        ENV
        | {
            "HOOKLEDGER_CONFIG": str(path),
            "HOOKLEDGER_DATABASE_URL": "postgresql+psycopg://u@db/hl",
            "HOOKLEDGER_REDIS_URL": "redis://cache:6379/1",
            "HOOKLEDGER_ADMIN_TOKEN": ADMIN,
        }
    )
    assert settings.config_path == str(path)
    assert settings.database_url == "postgresql+psycopg://u@db/hl"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.admin_token == ADMIN
    assert settings.sources["htx-main"].secrets[0] == HTX_NOW


def test_load_settings_missing_config_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOOKLEDGER_CONFIG"):
        load_settings({"HOOKLEDGER_CONFIG": str(tmp_path / "missing.toml")})


def test_load_settings_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nmax_body = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings({"HOOKLEDGER_CONFIG": str(path)})
    assert str(path) in str(info.value)
    assert "server.max_body: unknown key" in str(info.value)


def test_targets_must_answer_within_a_job() -> None:
    text = (
        "[processing]\njob_timeout_s = 20\n"
        '[targets.slow]\nkind = "fourpass"\nurl = "https://x.example/o"\nconnect_timeout_s = 5\nread_timeout_s = 15\n'
    )
    with pytest.raises(ConfigError, match=r"target 'slow'.*job_timeout_s \(20\)"):
        parse_config(text, {})


def test_every_problem_of_every_kind_is_reported_at_once() -> None:
    """Unset variables, bad values, unknown keys and rules naming what does not exist: all in
    one message, each once, without follow-on noise or Python wording."""
    text = """
[server]
max_body_bytes = -1
bogus = 1

[sources.a]
kind = "htx"
account_id = "1"
auth = "hmac-sha256"
secrets = ["${UNSET_SECRET}"]

[sources.b]
kind = "nope"
account_id = "1"
auth = "token"
secrets = ["t"]

[[rules]]
name = "r1"
target = "missing"
when = { event = "order.filled", source = "c" }
"""
    lines = config_error(text, {}).splitlines()
    assert lines == [
        "config: sources.a.secrets[0]: environment variable UNSET_SECRET is not set",
        "config: server.max_body_bytes: Input should be greater than 0",
        "config: server.bogus: unknown key",
        "config: sources.b.kind: Input should be 'htx', 'pingpong' or 'trx-energy'",
        "config: rule 'r1': no target named 'missing'",
        "config: rule 'r1': no source named 'c'",
    ]


def test_cross_section_problems_of_a_valid_config_are_each_named() -> None:
    text = """
[targets.t]
kind = "fourpass"
url = "https://signals.example/x"

[[rules]]
name = "r1"
target = "t"
when = { event = "order.filled" }

[[rules]]
name = "r1"
target = "u"
when = { event = "order.filled" }
"""
    message = config_error(text, {})
    assert "Value error" not in message
    assert message.splitlines() == [
        "config: rule 'r1': fourpass target 't' needs a signal",
        "config: rule 'r1': two rules have this name",
        "config: rule 'r1': no target named 'u'",
    ]
