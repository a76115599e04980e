"""Typed settings: environment (and ``.env``) plus the TOML config, validated once at start-up.

``load_settings()`` returns one ``Settings`` object that every process builds once and passes
in. Any problem raises ``ConfigError`` whose message names the offending key, e.g.
``sources.htx-main.auth: Input should be 'hmac-sha256', ...``. ``"${VAR}"`` in any string value
is replaced by the environment variable; an unset one is an error, so a missing secret stops
start-up rather than silently skipping verification.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from app import kinds
from app.domain.money import parse_decimal
from app.domain.netaddr import IPNetwork
from app.domain.signing import decode_webhook_secret
from app.errors import HookledgerError

DEFAULT_DATABASE_URL = "sqlite:///./var/hookledger.db"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(HookledgerError):
    """The configuration is unusable; the message names every bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    max_body_bytes: PositiveInt = 262_144
    trusted_proxies: tuple[IPNetwork, ...] = (ipaddress.IPv4Network("127.0.0.1/32"),)
    # A request whose body has not fully arrived this long after it started gets 408.
    body_timeout_s: float = Field(default=10, gt=0, le=600)
    # Wrong console passwords and admin bearer tokens per client address: past
    # ``auth_failure_limit`` within ``auth_failure_window_s`` the address gets 429.
    auth_failure_limit: PositiveInt = 10
    auth_failure_window_s: PositiveInt = 300


class ProcessingConfig(_Strict):
    """How stored events are processed (not in the contract's sample; documented in the README)."""

    queue: str = Field(default="hookledger-events", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    retry_delays_s: tuple[float, ...] = (5, 30, 120, 600, 1800)
    stale_after_s: float = Field(default=60, gt=0)
    sweep_interval_s: float = Field(default=5, gt=0)
    sweep_batch: PositiveInt = 1000
    dedupe_ttl_s: PositiveInt = 7 * 86_400
    job_timeout_s: PositiveInt = 60
    batch_size: int = Field(default=200, ge=1, le=1000)
    enqueue_linger_ms: float = Field(default=25, ge=0, le=1000)

    @field_validator("retry_delays_s")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must be >= 0 seconds")
        return value


class RetentionConfig(_Strict):
    """What the sweeper removes once it is old enough, a batch at a time (0 days: keep forever).
    Journal entries, postings, event rows, their hashes and actions are never removed."""

    body_days: float = Field(default=0, ge=0)  # raw bodies of applied and discarded events
    attempts_days: float = Field(default=90, ge=0)  # event attempts and signal delivery logs
    rejected_days: float = Field(default=30, ge=0)  # rejected callbacks (status rejected)
    batch_size: int = Field(default=500, ge=1, le=10_000)  # rows per short transaction
    pause_ms: float = Field(default=20, ge=0, le=60_000)  # between batches: ingest goes first
    interval_s: float = Field(default=300, gt=0)  # between passes once nothing is left


class LedgerConfig(_Strict):
    quote_currencies: tuple[str, ...] = ("usdt", "usdc", "usd", "btc", "eth", "ht", "husd", "trx")


def _known_kind(value: str) -> str:
    if value not in kinds.names():
        *others, last = (repr(k) for k in kinds.names())
        raise ValueError(f"Input should be {', '.join(others)} or {last}")
    return value


class PullConfig(_Strict):
    """``[sources.NAME.pull]``: asking the counterpart's API for what never arrived."""

    base_url: str = Field(pattern=r"^https?://[^\s/?#]+", repr=False)
    api_key: str | None = Field(default=None, repr=False)  # trx-energy: x-api-key
    access_key: str | None = Field(default=None, repr=False)  # htx: AccessKeyId
    secret_key: str | None = Field(default=None, repr=False)  # htx: signs each request
    interval_s: float = Field(default=60, gt=0)  # how often the sweeper pulls current gaps
    allow_private: bool = False  # allow loopback/private addresses (tests, LANs)
    timeout_s: float = Field(default=10, gt=0, le=120)  # per request
    concurrency: int = Field(default=4, ge=1, le=64)  # requests in flight per source
    retry_delays_s: tuple[float, ...] = (30, 120, 600, 1800, 3600)  # per gap, after an error


class SourceConfig(_Strict):
    kind: str  # a registered source kind (app.kinds)
    account_id: str = Field(min_length=1, max_length=64)
    auth: Literal["hmac-sha256", "standard-webhooks", "token", "none"]
    secrets: tuple[str, ...] = Field(default=(), repr=False)
    signature_header: str = Field(default="X-Signature", min_length=1)
    timestamp_header: str | None = None
    tolerance_s: PositiveInt = 300
    allow_ips: tuple[IPNetwork, ...] = ()
    gap_after_s: PositiveInt = 3600  # an order not final this long after its last event: a gap
    # Rejected callbacks kept (authenticated, refused by the parser or the schema): at most
    # this many stored per minute and in all; past either, they are answered as usual and
    # counted, but not stored.
    rejected_per_minute: PositiveInt = 60
    rejected_max: PositiveInt = 10_000
    pull: PullConfig | None = None

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        return _known_kind(value)

    @model_validator(mode="after")
    def _auth_is_complete(self) -> SourceConfig:
        if self.auth == "none":
            if not self.allow_ips:
                raise ValueError("auth = 'none' requires allow_ips")
            return self
        if not self.secrets:
            raise ValueError(f"auth = {self.auth!r} requires at least one secret in secrets")
        if any(not s for s in self.secrets):
            raise ValueError("secrets must not contain an empty string")
        if self.auth == "standard-webhooks":
            for secret in self.secrets:
                decode_webhook_secret(secret)
        return self

    @cached_property
    def _secret_bytes(self) -> tuple[bytes, ...]:
        if self.auth == "standard-webhooks":
            return tuple(decode_webhook_secret(s) for s in self.secrets)
        return tuple(s.encode() for s in self.secrets)

    def secret_bytes(self) -> tuple[bytes, ...]:
        """The active secrets as bytes (Standard Webhooks secrets base64-decoded), decoded
        once per source: every receipt asks."""
        return self._secret_bytes


class ApiKeyConfig(_Strict):
    key: str = Field(min_length=1)
    secret: str = Field(min_length=1, repr=False)
    accounts: tuple[str, ...] = Field(min_length=1)


class TargetConfig(_Strict):
    kind: Literal["fourpass", "webhook"]
    url: str = Field(pattern=r"^https?://[^\s/?#]+", repr=False)  # may hold a token
    secret: str | None = Field(default=None, repr=False)
    simulation: bool = True
    allow_private: bool = False  # allow loopback/private/link-local addresses (tests, LANs)
    connect_timeout_s: float = Field(default=3, gt=0, le=60)
    read_timeout_s: float = Field(default=10, gt=0, le=120)
    retry_delays_s: tuple[float, ...] = (5, 30, 120, 600, 1800)
    replay_window_s: float = Field(default=240, gt=0, le=290)  # 4pass refuses timestamps > 5 min

    @model_validator(mode="after")
    def _secret_where_needed(self) -> TargetConfig:
        if self.kind == "fourpass" and not self.simulation and not self.secret:
            raise ValueError("a fourpass target in live mode (simulation = false) needs a secret")
        if self.kind == "webhook":
            if not self.secret:
                raise ValueError("a webhook target needs a secret (whsec_...) to sign with")
            decode_webhook_secret(self.secret)
        return self


class RuleWhen(_Strict):
    source_kind: str | None = None
    source: str | None = None
    event: str | None = None
    symbol: str | None = None
    min_amount: Decimal | None = None  # the event's amount: HTX filled-amount, PingPong
    max_amount: Decimal | None = None  # sell_amount, TRX deposited; bounds are inclusive

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str | None) -> str | None:
        events = kinds.canonical_events()
        if value is not None and value not in events:
            raise ValueError(f"unknown event {value!r}; one of {', '.join(sorted(events))}")
        return value

    @field_validator("source_kind")
    @classmethod
    def _known_source_kind(cls, value: str | None) -> str | None:
        return value if value is None else _known_kind(value)

    @field_validator("min_amount", "max_amount", mode="before")
    @classmethod
    def _exact(cls, value: object) -> object:
        return None if value is None else parse_decimal(value)


class RuleSignal(_Strict):
    action: Literal["long_entry", "long_exit", "short_entry", "short_exit"]
    symbol: str = Field(min_length=1, max_length=32)
    quantity: PositiveInt


class RuleConfig(_Strict):
    name: str = Field(pattern=_NAME)
    target: str
    when: RuleWhen
    signal: RuleSignal | None = None  # required for fourpass targets
    max_quantity: PositiveInt = 10  # a signal above this is never sent (a fat-finger guard)

    @model_validator(mode="after")
    def _quantity_capped(self) -> RuleConfig:
        if self.signal is not None and self.signal.quantity > self.max_quantity:
            raise ValueError(
                f"signal.quantity {self.signal.quantity} is over max_quantity {self.max_quantity}"
            )
        return self


class FileConfig(_Strict):
    """The TOML file's shape. Unknown keys are errors."""

    server: ServerConfig = ServerConfig()
    processing: ProcessingConfig = ProcessingConfig()
    ledger: LedgerConfig = LedgerConfig()
    retention: RetentionConfig = RetentionConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    api_keys: dict[str, ApiKeyConfig] = Field(default_factory=dict)
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = ()

    @field_validator("sources", "targets", "api_keys")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"name {name!r} must match {_NAME}")
        return value

    @model_validator(mode="after")
    def _sections_agree(self) -> FileConfig:
        problems = cross_section_problems(self.model_dump())
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _number(value: object, default: object) -> float | None:
    value = default if value is None else value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def cross_section_problems(data: Mapping[str, Any]) -> list[str]:
    """Problems between sections (rules naming targets and sources, target timeouts against
    the job timeout), found on the raw config too, so that ``check-config`` reports them
    alongside the problems inside sections instead of only once those are fixed."""
    problems: list[str] = []
    sources = _table(data.get("sources"))
    targets = _table(data.get("targets"))
    job_timeout = _number(
        _table(data.get("processing")).get("job_timeout_s"),
        ProcessingConfig.model_fields["job_timeout_s"].default,
    )
    fields = TargetConfig.model_fields
    for name, raw in targets.items():
        target = _table(raw)
        connect = _number(target.get("connect_timeout_s"), fields["connect_timeout_s"].default)
        read = _number(target.get("read_timeout_s"), fields["read_timeout_s"].default)
        if None not in (connect, read, job_timeout):
            longest = float(connect or 0) + float(read or 0)
            if longest + 5 >= float(job_timeout or 0):
                problems.append(
                    f"target {name!r}: connect_timeout_s + read_timeout_s ({longest:g}) plus 5 s "
                    f"must stay under processing.job_timeout_s ({job_timeout:g})"
                )
    names: set[str] = set()
    rules = data.get("rules")
    for raw_rule in rules if isinstance(rules, list | tuple) else ():
        rule = _table(raw_rule)
        rule_name = rule.get("name")
        if not isinstance(rule_name, str):
            continue
        if rule_name in names:
            problems.append(f"rule {rule_name!r}: two rules have this name")
        names.add(rule_name)
        target_name = rule.get("target")
        if isinstance(target_name, str):
            named = targets.get(target_name)
            if named is None:
                problems.append(f"rule {rule_name!r}: no target named {target_name!r}")
            elif _table(named).get("kind") == "fourpass" and rule.get("signal") is None:
                problems.append(
                    f"rule {rule_name!r}: fourpass target {target_name!r} needs a signal"
                )
        source = _table(rule.get("when")).get("source")
        if isinstance(source, str) and source not in sources:
            problems.append(f"rule {rule_name!r}: no source named {source!r}")
    return problems


class Settings(BaseModel):
    """Everything a process needs, built once by ``load_settings`` and passed in."""

    model_config = ConfigDict(frozen=True)

    config_path: str
    database_url: str = Field(repr=False)  # URLs may hold passwords
    redis_url: str | None = Field(repr=False)  # None: the caller resolves it (app.redis_embedded)
    admin_token: str | None = Field(repr=False)
    file: FileConfig

    @property
    def sources(self) -> dict[str, SourceConfig]:
        return self.file.sources

    @property
    def processing(self) -> ProcessingConfig:
        return self.file.processing

    @property
    def server(self) -> ServerConfig:
        return self.file.server

    @property
    def retention(self) -> RetentionConfig:
        return self.file.retention


def _expand(value: Any, env: Mapping[str, str], path: str, errors: list[str]) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            return env[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{path}.{k}" if path else k, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    return value


def _within(path: str, prefix: str) -> bool:
    """True when ``path`` (``sources.a.secrets[0]``) is ``prefix`` or lies inside it."""
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))


def _format_errors(exc: ValidationError, *, skip_top_level: bool = False) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        if skip_top_level and not err["loc"]:
            continue  # cross_section_problems says these, one line each
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc}: {msg}")
    return lines


def parse_config(text: str, env: Mapping[str, str], *, origin: str = "config") -> FileConfig:
    """Parse and validate TOML config text; raise ``ConfigError`` naming every bad key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from exc
    errors: list[str] = []
    expanded = _expand(raw, env, "", errors)
    try:
        file = FileConfig.model_validate(expanded)
    except ValidationError as exc:
        # Every problem at once: unset variables, each bad key, and what the sections say
        # of each other (pydantic checks that last only once every section is valid).
        unset = [e.split(":", 1)[0] for e in errors]  # their keys' follow-on errors are noise
        errors += [
            line
            for line in _format_errors(exc, skip_top_level=True)
            if not any(_within(path, line.split(":", 1)[0]) for path in unset)
        ]
        errors += cross_section_problems(expanded)
    if errors:
        raise ConfigError("\n".join(f"{origin}: {e}" for e in errors))
    return file


def demo_config_text() -> str:
    """The shipped demo config (used when no ./hookledger.toml exists)."""
    return resources.files("app").joinpath("demo.toml").read_text(encoding="utf-8")


def environment(dotenv_path: str | os.PathLike[str] = ".env") -> dict[str, str]:
    """The process environment over the values of a ``.env`` file (the environment wins)."""
    merged = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
    merged.update(os.environ)
    return merged


ENVIRONMENT_NAME = "environment"


def _with_environment_key(file: FileConfig, value: str) -> FileConfig:
    """``file`` with the accountants' API key ``HOOKLEDGER_API_KEY`` (``KEY:SECRET``, reading
    every account) added as ``[api_keys.environment]``; ``hookledger up`` hands its key over so."""
    ident, _, secret = value.partition(":")
    if not ident or not secret:
        raise ConfigError("HOOKLEDGER_API_KEY: must be KEY:SECRET")
    taken = file.api_keys.get(ENVIRONMENT_NAME) is not None or any(
        hmac.compare_digest(cfg.key.encode(), ident.encode()) for cfg in file.api_keys.values()
    )
    if taken:
        raise ConfigError(f"HOOKLEDGER_API_KEY: the config already has a key {ident!r}")
    added = ApiKeyConfig(key=ident, secret=secret, accounts=("*",))
    return file.model_copy(update={"api_keys": {**file.api_keys, ENVIRONMENT_NAME: added}})


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment and the TOML config. Raises ``ConfigError``."""
    env = environment() if env is None else env
    path = env.get("HOOKLEDGER_CONFIG")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"HOOKLEDGER_CONFIG: cannot read {path}: {exc.strerror}") from exc
        origin = path
    elif Path("hookledger.toml").is_file():
        origin = "hookledger.toml"
        text = Path(origin).read_text(encoding="utf-8")
    else:
        origin = "demo config (app/demo.toml)"
        text = demo_config_text()
    file = parse_config(text, env, origin=origin)
    redis_url = env.get("HOOKLEDGER_REDIS_URL") or None
    if redis_url is not None:
        from app.store.redis_conn import parse_sentinel_url

        try:
            parse_sentinel_url(redis_url)
        except ValueError as exc:
            raise ConfigError(f"HOOKLEDGER_REDIS_URL: {exc}") from exc
    api_key = env.get("HOOKLEDGER_API_KEY")
    if api_key:
        file = _with_environment_key(file, api_key)
    return Settings(
        config_path=origin,
        database_url=env.get("HOOKLEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=redis_url,
        admin_token=env.get("HOOKLEDGER_ADMIN_TOKEN") or None,
        file=file,
    )


__all__ = ["ConfigError", "Settings", "SourceConfig", "load_settings", "parse_config"]
