#!/usr/bin/env python3
# The secrets below are fixture-only; make_data tells one story, step by step.
# ruff: noqa: S105, PLR0915
"""Build the "database made by release 0.1.0" fixture (tests/fixtures/release-0.1.0/).

Run it with the 0.1.0 code, from a checkout of commit 4e2972a (a git worktree), so that
``import app`` and ``import workers`` are 0.1.0's::

    git worktree add --detach /tmp/hl-010 4e2972a
    cd /tmp/hl-010
    PYTHONPATH=/tmp/hl-010 /path/to/venv/bin/python /path/to/main/scripts/make_release_fixture.py \
        --out /path/to/main/tests/fixtures/release-0.1.0

For each database (SQLite, then PostgreSQL) it starts from an empty database and makes the data
through 0.1.0's public surface: signed callbacks over HTTP (a starlette ``TestClient`` over
``app.main.create_app``), RQ burst workers in this process (what ``hookledger worker --burst``
runs), the ``hookledger`` CLI as a subprocess for ops (prune, dlq discard/replay, signals pause,
reconcile, ledger verify), the admin API for a discard and a replay, and two fake counterparts
on loopback for signals (0.1.0's own tests/counterparts.py: a 4pass API and a Standard Webhooks
receiver). The one step that is not public surface is the ``retrying`` event: like 0.1.0's
``broken_orders`` test fixture, a trigger makes inserts into ``orders`` fail for one receipt
and is dropped again.

It then dumps each database (``sqlite3`` ``iterdump()``; ``pg_dump --no-owner
--no-privileges``), restores each dump into a scratch database, and reads the restored data back
through 0.1.0's HTTP API (``reads.json``) and ``hookledger ledger verify`` (which must pass).

``reads.json`` holds each request (``auth``, ``path`` with its query, ``status``, ``json``). To
compare another version with it, send each recorded request again (``api_headers`` signs one
for the accountants' API; the admin API takes ``Bearer`` + ``ADMIN_TOKEN``) and compare the
answers. Numbers there are exact decimal text: load the file with
``json.loads(text, parse_float=decimal.Decimal)``. Nothing but ``main`` and the ``Build``
steps import the application, so a test may import this module under any version.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

RELEASE_COMMIT = "4e2972a"
DATABASES = ("sqlite", "postgresql")

# --- fixture-only secrets: they protect nothing but this fixture ----------------------------
HTX_SECRET = "fixture-010-htx-secret"
PP_SECRET = "whsec_" + base64.b64encode(b"fixture-010-pingpong-signing-key").decode()
TRX_TOKEN = "fixture-010-trx-token"
ADMIN_TOKEN = "fixture-010-admin-token"
FOURPASS_TOKEN = "fixture-010-fourpass-url-token"
FOURPASS_SECRET = "fixture-010-fourpass-secret"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"fixture-010-webhook-target-key!!").decode()
API_KEYS = {  # key -> (secret, accounts)
    "ak_finance": ("fixture-010-finance-api-secret", ("1001",)),
    "ak_treasury": ("fixture-010-treasury-api-secret", ("2002", "3003")),
    "ak_auditor": ("fixture-010-auditor-api-secret", ("*",)),
}
READ_KEY = "ak_auditor"  # the reads are made with the key that sees every account
ACCOUNTS = ("1001", "2002", "3003")
QUEUE = "hl-fixture-010"
# Where the signal targets listen when the config is written for the reads (hookledger.toml):
# nothing is sent during reads, the URLs only have to be valid.
PLACEHOLDER_FOURPASS = "http://127.0.0.1:9"
PLACEHOLDER_RECEIVER = "http://127.0.0.1:9"


def config_text(*, fourpass_url: str, receiver_url: str, quote_dai: bool) -> str:
    """The TOML config. ``quote_dai``: ``dai`` is a quote currency (the fix of the dead
    ``dogedai`` event that is then replayed); the reads use the config with it."""
    quotes = ["usdt", "usdc", "usd", "btc", "eth", "ht", "husd", "trx"] + (
        ["dai"] if quote_dai else []
    )
    keys = "".join(
        f"""
[api_keys.{name.removeprefix("ak_")}]
key = "{name}"
secret = "{secret}"
accounts = {json.dumps(list(accounts))}
"""
        for name, (secret, accounts) in API_KEYS.items()
    )
    return f"""\
# hookledger config of the release-0.1.0 fixture (fixture-only secrets).
[server]
max_body_bytes = 65536
trusted_proxies = ["127.0.0.1/32"]

[processing]
queue = "{QUEUE}"
enqueue_linger_ms = 0               # each receipt's job is queued before its answer
retry_delays_s = [3600, 3600]       # a retrying event stays retrying
stale_after_s = 1
sweep_interval_s = 0.2
job_timeout_s = 30

[ledger]
quote_currencies = {json.dumps(quotes)}

[sources.htx-main]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["{HTX_SECRET}"]

[sources.pp]
kind = "pingpong"
account_id = "2002"
auth = "standard-webhooks"
secrets = ["{PP_SECRET}"]

[sources.trx]
kind = "trx-energy"
account_id = "3003"
auth = "token"
secrets = ["{TRX_TOKEN}"]
{keys}
[targets.tw-futures]
kind = "fourpass"
url = "{fourpass_url}/webhook/{FOURPASS_TOKEN}/order"
secret = "{FOURPASS_SECRET}"
simulation = false
allow_private = true
connect_timeout_s = 1
read_timeout_s = 2
retry_delays_s = [0, 0]

[targets.tw-spot]
kind = "fourpass"
url = "{fourpass_url}/webhook/{FOURPASS_TOKEN}/order"
secret = "{FOURPASS_SECRET}"
simulation = false
allow_private = true
connect_timeout_s = 1
read_timeout_s = 2
retry_delays_s = [3600]

[targets.treasury]
kind = "webhook"
url = "{receiver_url}/hooks"
secret = "{WEBHOOK_SECRET}"
allow_private = true
connect_timeout_s = 1
read_timeout_s = 2
retry_delays_s = [0, 0]

[targets.ops-alerts]
kind = "webhook"
url = "{receiver_url}/hooks"
secret = "{WEBHOOK_SECRET}"
allow_private = true
connect_timeout_s = 1
read_timeout_s = 2

[targets.internal]
kind = "fourpass"
url = "http://127.0.0.1:9/webhook/x/order"
retry_delays_s = [0]

[[rules]]
name = "hedge-btc-fills"
target = "tw-futures"
when = {{ source_kind = "htx", event = "order.filled", symbol = "btcusdt" }}
signal = {{ action = "short_entry", symbol = "MXFR1", quantity = 1 }}

[[rules]]
name = "hedge-eth-fills"
target = "tw-spot"
when = {{ source_kind = "htx", event = "order.filled", symbol = "ethusdt" }}
signal = {{ action = "long_entry", symbol = "TXFR1", quantity = 2 }}

[[rules]]
name = "big-settlements"
target = "treasury"
when = {{ event = "contract.settled", min_amount = "1000" }}

[[rules]]
name = "rental-failures"
target = "ops-alerts"
when = {{ event = "rental.failed" }}

[[rules]]
name = "deposits-inward"
target = "internal"
when = {{ event = "deposit.received" }}
signal = {{ action = "long_entry", symbol = "TXFR1", quantity = 1 }}
"""


# --- exact JSON: decimals keep their text ---------------------------------------------------


def loads_exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def dumps_exact(value: Any, indent: int | None = 0, step: int = 1) -> str:
    """JSON text of ``value`` whose ``Decimal`` numbers are written as their exact text;
    ``indent=None``: compact, on one line."""
    if isinstance(value, dict | list) and value:
        pairs = value.items() if isinstance(value, dict) else [(None, v) for v in value]
        deeper = None if indent is None else indent + step
        parts = [
            (
                f"{json.dumps(k, ensure_ascii=False)}:" + ("" if indent is None else " ")
                if k is not None
                else ""
            )
            + dumps_exact(v, deeper, step)
            for k, v in pairs
        ]
        start, end = ("{", "}") if isinstance(value, dict) else ("[", "]")
        if indent is None:
            return start + ",".join(parts) + end
        inner, pad = " " * (indent + step), " " * indent
        return start + "\n" + ",\n".join(inner + p for p in parts) + "\n" + pad + end
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# --- the reads: version independent (HTTP only) ---------------------------------------------


def api_headers(key: str, secret: str, path_and_query: str) -> dict[str, str]:
    """The accountants' API signature: HMAC-SHA256 over ``ms + GET + path [+ ?query]``."""
    stamp = str(int(time.time() * 1000))
    path, _, query = path_and_query.partition("?")
    message = f"{stamp}GET{path}" + (f"?{query}" if query else "")
    signature = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {"X-API-Key": key, "X-API-Timestamp": stamp, "X-API-Signature": signature}


def collect_reads(
    get: Callable[[str, dict[str, str]], Any],
    *,
    admin_token: str = ADMIN_TOKEN,
    api_secrets: dict[str, str] | None = None,
    signal_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Read every listing of the accountants' API and the admin event log through HTTP.

    ``get(path_and_query, headers)`` returns a response with ``status_code`` and ``text``
    (a ``TestClient``'s or an ``httpx.Client``'s ``get``). Returns the requests in order, each
    ``{"auth", "path", "status", "json"}``; ``auth`` is ``admin`` or ``api:<key>``."""
    secrets = api_secrets or {name: secret for name, (secret, _) in API_KEYS.items()}
    reads: list[dict[str, Any]] = []

    def call(auth: str, path: str) -> Any:
        if auth == "admin":
            headers = {"Authorization": f"Bearer {admin_token}"}
        else:
            key = auth.removeprefix("api:")
            headers = api_headers(key, secrets[key], path)
        response = get(path, headers)
        body = loads_exact(response.text)
        reads.append({"auth": auth, "path": path, "status": response.status_code, "json": body})
        return body

    def api(path: str, key: str = READ_KEY, **params: Any) -> Any:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return call(f"api:{key}", path + (f"?{query}" if query else ""))

    def pages(path: str, name: str, page_size: int, **params: Any) -> list[Any]:
        rows: list[Any] = []
        page = 1
        while True:
            body = api(path, **params, page=page, page_size=page_size)
            data = body.get("data") or {}
            rows += data.get(name) or []
            if len(rows) >= int(data.get("total_records") or 0) or not data.get(name):
                return rows
            page += 1

    # Transactions: every page, pinned by the first page's as_of_id, as a client pages.
    first = api("/account/v1/transactions", page=1, page_size=10)
    data = first.get("data") or {}
    as_of_id, total = data.get("as_of_id"), int(data.get("total_records") or 0)
    for page in range(2, -(-total // 10) + 1):
        api("/account/v1/transactions", page=page, page_size=10, as_of_id=as_of_id)
    api("/account/v1/transactions")  # the defaults (page 1 of 20)
    # Filters: the first page of each (its total_records counts the rest).
    for business_type in ("crypto_spot", "fx_contract", "deposit"):
        api("/account/v1/transactions", business_type=business_type, page_size=5)
    api("/account/v1/transactions", business_types="fx_contract,deposit", page_size=5)
    for io_type in ("in", "out"):
        api("/account/v1/transactions", io_type=io_type, page_size=5)
    for account in ACCOUNTS:
        api("/account/v1/transactions", account_id=account, page_size=5)
    api("/account/v1/balances")
    for account in ACCOUNTS:
        api("/account/v1/balances", account_id=account)
    orders = pages("/account/v1/orders", "orders", 5)
    for account in ACCOUNTS:
        api("/account/v1/orders", account_id=account)
    for order in orders:
        api(f"/account/v1/orders/{order['source']}/{order['order_id']}")
    pages("/account/v1/contracts", "contracts", 2)
    pages("/account/v1/deposits", "deposits", 1)
    # The narrower keys see their own accounts only.
    for key in ("ak_finance", "ak_treasury"):
        api("/account/v1/transactions", key, page_size=5)
        api("/account/v1/balances", key)
        for listing in ("orders", "contracts", "deposits"):
            api(f"/account/v1/{listing}", key, page_size=500)

    # The admin event log: every page, then each event and each signal.
    event_ids: list[str] = []
    cursor = None
    while True:
        body = call("admin", "/admin/events?limit=10" + (f"&cursor={cursor}" if cursor else ""))
        event_ids += [e["event_id"] for e in body.get("events") or []]
        cursor = body.get("next_cursor")
        if not cursor:
            break
    for status in ("received", "unhandled", "retrying", "dead", "discarded"):
        call("admin", f"/admin/events?status={status}&limit=500")
    call("admin", "/admin/events?status=processed&limit=3")
    for source in ("htx-main", "pp", "trx"):
        call("admin", f"/admin/events?source={source}&limit=3")
    for event_id in event_ids:
        call("admin", f"/admin/events/{event_id}")
    for signal_id in signal_ids or []:
        call("admin", f"/admin/events/sig_{signal_id}")
    return reads


# --- payloads ----------------------------------------------------------------------------------


def htx(
    order_id: int, state: str, filled: str, cash: str, fees: str, **extra: Any
) -> dict[str, Any]:
    """An HTX order callback (a btcusdt buy unless ``extra`` says otherwise)."""
    return {
        "order-id": order_id,
        "client-order-id": f"fx-{order_id}",
        "account-id": 1001,
        "symbol": "btcusdt",
        "type": "buy-limit",
        "amount": "0.03",
        "price": "42000",
        "created-at": 1704440609000,
        "filled-amount": filled,
        "filled-cash-amount": cash,
        "filled-fees": fees,
        "source": "api",
        "state": state,
        **extra,
    }


def trade(trade_id: int, price: str, amount: str, at_ms: int) -> dict[str, Any]:
    return {"trade-id": trade_id, "trade-time": at_ms, "trade-price": price, "trade-amount": amount}


def pp(event_type: str, msg_id: str, position_id: str, **payload: Any) -> dict[str, Any]:
    """A PingPong contract callback (seed 003's example, another position)."""
    body = {
        "position_id": position_id,
        "base_currency": "CNH",
        "base_currency2": "MXN",
        "buy_amount": Decimal("3645.95"),
        "buy_currency": "CNH",
        "open_time": 1704440609000,
        "pay_way": "balance",
        "price": Decimal("2.37729"),
        "price2": Decimal("0.420647"),
        "sell_amount": Decimal("8667.49"),
        "sell_currency": "MXN",
        "source_type": "spot",
        "status": "open",
        "trade_channel": "api",
        "value_date": "2024-01-05",
    }
    body.update(payload)
    return {"event_type": event_type, "msg_id": msg_id, "payload": body}


def rental(rental_id: int, status: int) -> dict[str, Any]:
    return {
        "type": "order",
        "id": rental_id,
        "orderTime": 3600,
        "orderType": 0,
        "receiverAddress": "TJqiMSSmRtm4LvXrYBWysz9DnNrFQDaBv9",
        "resourceType": 1,
        "source": "WEB",
        "status": status,
        "timeStamp": 1759463663134 + rental_id,
        "times": 1,
    }


def deposit(tx_hash: str, sun: int, deposit_id: int) -> dict[str, Any]:
    return {
        "type": "deposit",
        "id": deposit_id,
        "address": "T9z6yrJXuiJpfWhis3Ae9nHK7k65yM5AHP",
        "fromAddress": "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ",
        "amount": sun,
        "txHash": tx_hash,
        "createdAt": "2025-10-08 16:49:17",
    }


TX_A = "9e1babdab1fc7c92ee3a254474763a43c75cf37350d1cd22c18a451183ede4be"
TX_B = "4f0c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"


# --- running 0.1.0 -----------------------------------------------------------------------------


_STARTED = time.monotonic()


def note(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    raise SystemExit(f"make_release_fixture: {message}")


class Build:
    """One database being made: the config file, the environment, the web app and a runtime."""

    def __init__(
        self,
        *,
        checkout: Path,
        workdir: Path,
        database_url: str,
        redis_url: str,
        fourpass: Any,
        receiver: Any,
    ) -> None:
        self.checkout, self.workdir = checkout, workdir
        self.database_url, self.redis_url = database_url, redis_url
        self.fourpass, self.receiver = fourpass, receiver
        self.config_path = workdir / "hookledger.toml"
        (workdir / "metrics").mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(checkout),
            "HOOKLEDGER_CONFIG": str(self.config_path),
            "HOOKLEDGER_DATABASE_URL": database_url,
            "HOOKLEDGER_REDIS_URL": redis_url,
            "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
            "HOOKLEDGER_LOG_FORMAT": "json",
            "HOOKLEDGER_LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        }
        self.client: Any = None
        self.runtime: Any = None
        self.ids: dict[str, str] = {}  # label -> event id
        self.signals: dict[str, int] = {}  # label -> signal id

    # -- processes --------------------------------------------------------------------------

    def start(self, *, quote_dai: bool) -> None:
        from starlette.testclient import TestClient

        from app.main import create_app
        from app.settings import load_settings
        from workers.runtime import build_runtime, set_runtime

        self.stop()
        note(f"start the web app (quote_dai={quote_dai})")
        self.config_path.write_text(
            config_text(
                fourpass_url=self.fourpass.url, receiver_url=self.receiver.url, quote_dai=quote_dai
            )
        )
        settings = load_settings(self.env)
        self.runtime = build_runtime(settings)
        set_runtime(self.runtime)
        self.client = TestClient(create_app(settings), client=("127.0.0.1", 50000))
        self.client.__enter__()

    def stop(self) -> None:
        from workers.runtime import set_runtime

        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None
        if self.runtime is not None:
            set_runtime(None)
            self.runtime = None

    def run_jobs(self) -> None:
        """Run every queued job (events and signal deliveries) with a burst worker."""
        note("burst worker")
        from rq import SimpleWorker
        from rq.serializers import JSONSerializer

        worker = SimpleWorker(
            [self.runtime.events.queue], connection=self.runtime.redis, serializer=JSONSerializer
        )
        # RQ's command channel (pub/sub) is of no use to a burst run here, and joining its
        # thread at the end sometimes waits out a 60 s poll.
        worker.subscribe = worker.unsubscribe = lambda: None  # type: ignore[method-assign]
        worker.work(burst=True, logging_level="WARNING")

    def cli(self, *args: str, actor: str = "ops:fixture-cli", expect: int = 0) -> str:
        """``hookledger ARGS`` as a separate process, as an operator runs it."""
        note(f"hookledger {' '.join(args)}")
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env={**self.env, "HOOKLEDGER_ACTOR": actor},
            cwd=self.checkout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != expect:
            fail(
                f"hookledger {' '.join(args)} exited {result.returncode} (expected {expect})\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    # -- receipts ---------------------------------------------------------------------------

    def _accepted(self, label: str, response: Any, *, duplicate: bool = False) -> str:
        body = response.json()
        want = "duplicate" if duplicate else "accepted"
        if response.status_code != 200 or body.get("status") != want:
            fail(f"{label}: expected {want}, got {response.status_code} {response.text}")
        if not duplicate:
            self.ids[label] = body["event_id"]
        return str(body["event_id"])

    def post_htx(self, label: str, payload: dict[str, Any], *, duplicate: bool = False) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        signature = hmac.new(HTX_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        response = self.client.post(
            "/hooks/htx-main",
            content=raw,
            headers={"content-type": "application/json", "x-signature": signature},
        )
        return self._accepted(label, response, duplicate=duplicate)

    def post_htx_form(self, label: str, payload: dict[str, Any]) -> str:
        fields = {k: (json.dumps(v) if isinstance(v, list) else str(v)) for k, v in payload.items()}
        raw = urlencode(fields).encode()
        signature = hmac.new(HTX_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        response = self.client.post(
            "/hooks/htx-main",
            content=raw,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-signature": signature,
            },
        )
        return self._accepted(label, response)

    def post_pp(self, label: str, payload: dict[str, Any]) -> str:
        raw = dumps_exact(payload, None).encode()
        key = base64.b64decode(PP_SECRET.removeprefix("whsec_"))
        stamp = int(time.time())
        msg_id = str(payload["msg_id"])
        digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
        response = self.client.post(
            "/hooks/pp",
            content=raw,
            headers={
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            },
        )
        return self._accepted(label, response)

    def post_trx(self, label: str, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        response = self.client.post(
            f"/hooks/trx/{TRX_TOKEN}", content=raw, headers={"content-type": "application/json"}
        )
        return self._accepted(label, response)

    def admin_post(self, path: str, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
        response = self.client.post(
            path,
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Actor": actor},
        )
        if response.status_code != 200:
            fail(f"POST {path}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    # -- reading back what happened --------------------------------------------------------

    def status(self, label: str) -> str:
        from sqlalchemy import text

        with self.runtime.engine.connect() as conn:
            return str(
                conn.execute(
                    text("SELECT status FROM inbound_events WHERE id = :i"), {"i": self.ids[label]}
                ).scalar_one()
            )

    def expect(self, **statuses: str) -> None:
        for label, want in statuses.items():
            got = self.status(label)
            if got != want:
                fail(f"event {label} ({self.ids[label]}) is {got}, expected {want}")

    def signal_of(self, label: str, rule: str) -> tuple[int, str]:
        from sqlalchemy import text

        with self.runtime.engine.connect() as conn:
            row = conn.execute(
                text("SELECT id, status FROM signals WHERE event_id = :e AND rule = :r"),
                {"e": self.ids[label], "r": rule},
            ).one()
        self.signals[f"{label}/{rule}"] = int(row[0])
        return int(row[0]), str(row[1])

    def expect_signal(self, label: str, rule: str, want: str) -> int:
        signal_id, got = self.signal_of(label, rule)
        if got != want:
            fail(f"signal {rule} of {label} is {got}, expected {want}")
        return signal_id

    # -- fault injection (the one non-public step) -----------------------------------------

    def break_orders(self) -> None:
        from sqlalchemy import text

        engine = self.runtime.engine
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(
                    text(
                        "CREATE TRIGGER hl_fail BEFORE INSERT ON orders "
                        "BEGIN SELECT RAISE(ABORT, 'orders are broken'); END"
                    )
                )
            else:
                conn.execute(
                    text(
                        "CREATE FUNCTION hl_fail() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'orders are broken'; END $$ LANGUAGE plpgsql"
                    )
                )
                conn.execute(
                    text(
                        "CREATE TRIGGER hl_fail BEFORE INSERT ON orders "
                        "FOR EACH ROW EXECUTE FUNCTION hl_fail()"
                    )
                )

    def heal_orders(self) -> None:
        from sqlalchemy import text

        engine = self.runtime.engine
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(text("DROP TRIGGER hl_fail"))
            else:
                conn.execute(text("DROP TRIGGER hl_fail ON orders"))
                conn.execute(text("DROP FUNCTION hl_fail()"))


def make_data(b: Build) -> None:
    """The story the fixture tells, on one database."""
    b.start(quote_dai=False)

    # Phase A, made first so that `events prune` empties only these bodies.
    b.post_htx("htx-5003-submitted", htx(5003, "submitted", "0", "0", "0"))
    b.post_htx("htx-5003-canceled", htx(5003, "canceled", "0", "0", "0"))
    b.post_trx("trx-rental-7001-created", rental(7001, 0))
    b.run_jobs()
    b.expect(
        **{
            "htx-5003-submitted": "processed",
            "htx-5003-canceled": "processed",
            "trx-rental-7001-created": "processed",
        }
    )
    time.sleep(3)
    out = b.cli("events", "prune", "--older-than", "0.00002")  # 1.7 s
    if "pruned the raw bodies of 3" not in out:
        fail(f"prune did not prune the 3 phase-A bodies: {out}")

    # The kill switch: nothing is sent to ops-alerts (its signal stays pending).
    b.cli(
        "signals",
        "pause",
        "ops-alerts",
        "--reason",
        "alerts channel under maintenance",
        "--actor",
        "ops:fixture-cli",
    )

    # HTX order 5001: partial fills, then filled (a delivered 4pass signal), then a redelivery.
    b.post_htx("htx-5001-submitted", htx(5001, "submitted", "0", "0", "0"))
    b.post_htx(
        "htx-5001-partial-1",
        htx(
            5001,
            "partial-filled",
            "0.01",
            "420",
            "0.00002",
            trade=[trade(900001, "42000", "0.01", 1704440610000)],
        ),
    )
    b.post_htx(
        "htx-5001-partial-2",
        htx(
            5001,
            "partial-filled",
            "0.02",
            "840.2",
            "0.00004",
            trade=[trade(900002, "42020", "0.01", 1704440611000)],
        ),
    )
    b.run_jobs()
    filled_5001 = htx(
        5001,
        "filled",
        "0.03",
        "1260.7",
        "0.00006",
        trade=[trade(900003, "42050", "0.01", 1704440612000)],
    )
    b.post_htx("htx-5001-filled", filled_5001)
    b.run_jobs()
    b.post_htx("htx-5001-filled", filled_5001, duplicate=True)
    b.expect_signal("htx-5001-filled", "hedge-btc-fills", "delivered")

    # HTX order 5002: a sell, partly filled, then canceled (partial-canceled).
    sell = {"symbol": "ethusdt", "type": "sell-limit", "amount": "1.5", "price": "2500"}
    b.post_htx("htx-5002-submitted", htx(5002, "submitted", "0", "0", "0", **sell))
    b.post_htx(
        "htx-5002-partial",
        htx(
            5002,
            "partial-filled",
            "0.5",
            "1250",
            "0.625",
            **sell,
            trade=[trade(900004, "2500", "0.5", 1704440620000)],
        ),
    )
    b.post_htx(
        "htx-5002-partial-canceled", htx(5002, "partial-canceled", "0.5", "1250", "0.625", **sell)
    )
    # HTX order 5004: rejected, with the exchange's error.
    b.post_htx(
        "htx-5004-rejected",
        htx(
            5004,
            "rejected",
            "0",
            "0",
            "0",
            symbol="htusdt",
            type="buy-market",
            amount="100",
            price="0",
            **{"err-code": "order-value-min-error", "err-msg": "order value below minimum"},
        ),
    )
    # HTX order 5007, form-encoded (its trades as JSON text): ETH bought for BTC.
    b.post_htx_form(
        "htx-5007-filled-form",
        htx(
            5007,
            "filled",
            "0.5",
            "0.026",
            "0.001",
            symbol="ethbtc",
            amount="0.5",
            price="0.052",
            trade=[trade(900007, "0.052", "0.5", 1704440630000)],
        ),
    )
    b.run_jobs()
    b.expect(
        **{
            "htx-5002-partial-canceled": "processed",
            "htx-5004-rejected": "processed",
            "htx-5007-filled-form": "processed",
        }
    )

    # HTX order 5005: filled, its 4pass signal answered 503: retrying in an hour.
    b.fourpass.forced.append(503)
    b.post_htx(
        "htx-5005-filled",
        htx(
            5005,
            "filled",
            "2",
            "5000",
            "0.004",
            symbol="ethusdt",
            amount="2",
            price="2500",
            trade=[trade(900005, "2500", "2", 1704440640000)],
        ),
    )
    b.run_jobs()
    b.expect_signal("htx-5005-filled", "hedge-eth-fills", "retrying")

    # HTX order 5006: filled, its 4pass signal refused (400): dead, later replayed by ops.
    b.fourpass.forced.append(400)
    b.post_htx(
        "htx-5006-filled",
        htx(
            5006,
            "filled",
            "0.01",
            "421",
            "0.842",
            type="sell-limit",
            amount="0.01",
            price="42100",
            trade=[trade(900006, "42100", "0.01", 1704440650000)],
        ),
    )
    b.run_jobs()
    sig_5006 = b.expect_signal("htx-5006-filled", "hedge-btc-fills", "dead")

    # PingPong: created, extended (unhandled in 0.1.0), settled (a webhook signal that is
    # retried once), settled again (one settlement per contract); two cancels, one with a
    # penalty; a small settlement below the rule's min_amount.
    b.post_pp("pp-settle-created", pp("positionCreate", "FX-P-0001", "240105SP000001"))
    b.post_pp(
        "pp-settle-extend",
        pp("positionExtend", "FX-P-0002", "240105SP000001", status="settle", status_desc="已履约"),
    )
    b.receiver.forced.append(500)
    b.post_pp(
        "pp-settle-settled",
        pp("positionSettle", "FX-P-0003", "240105SP000001", status="settle", status_desc="已履约"),
    )
    b.run_jobs()
    b.cli("reconcile", "--older-than", "0")  # the sweep queues the due signal retry
    b.run_jobs()
    b.post_pp(
        "pp-settle-settled-again",
        pp("positionSettle", "FX-P-0004", "240105SP000001", status="settle"),
    )
    b.post_pp(
        "pp-penalty-created",
        pp(
            "positionCreate",
            "FX-P-0005",
            "240106SP000002",
            sell_amount=Decimal("5000"),
            buy_amount=Decimal("2100.5"),
        ),
    )
    b.post_pp(
        "pp-penalty-canceled",
        pp(
            "positionCancel",
            "FX-P-0006",
            "240106SP000002",
            sell_amount=Decimal("5000"),
            buy_amount=Decimal("2100.5"),
            status="cancel",
            violate_money=Decimal("150.25"),
            violate_currency="CNH",
            violate_date=1704527009000,
            cancel_way="customer",
        ),
    )
    b.post_pp("pp-cancel-created", pp("positionCreate", "FX-P-0007", "240107SP000003"))
    b.post_pp(
        "pp-cancel-canceled",
        pp("positionCancel", "FX-P-0008", "240107SP000003", status="cancel", cancel_way="customer"),
    )
    b.post_pp(
        "pp-small-settled",
        pp(
            "positionSettle",
            "FX-P-0009",
            "240108SP000004",
            sell_amount=Decimal("10"),
            buy_amount=Decimal("4.21"),
            status="settle",
            value_date="2024-01-08",
        ),
    )
    b.run_jobs()
    b.expect(
        **{
            "pp-settle-extend": "unhandled",
            "pp-settle-settled": "processed",
            "pp-settle-settled-again": "processed",
            "pp-penalty-canceled": "processed",
            "pp-cancel-canceled": "processed",
            "pp-small-settled": "processed",
        }
    )
    b.expect_signal("pp-settle-settled", "big-settlements", "delivered")

    # TRON energy: a rental delegated, one failed (its signal waits: ops-alerts is paused),
    # two deposits (their signals refused by the SSRF guard: dead), an unknown push.
    b.post_trx("trx-rental-7001-delegated", rental(7001, 1))
    b.post_trx("trx-rental-7002-failed", rental(7002, -1))
    b.post_trx("trx-deposit-a", deposit(TX_A, 1_000_000_000, 5))
    b.post_trx("trx-deposit-b", deposit(TX_B, 2_500_000, 6))
    b.post_trx("trx-withdrawal-unknown", {"type": "withdrawal", "id": 11, "amount": 5})
    b.run_jobs()
    b.expect(
        **{
            "trx-rental-7001-delegated": "processed",
            "trx-rental-7002-failed": "processed",
            "trx-deposit-a": "processed",
            "trx-deposit-b": "processed",
            "trx-withdrawal-unknown": "unhandled",
        }
    )
    b.expect_signal("trx-rental-7002-failed", "rental-failures", "pending")
    b.expect_signal("trx-deposit-a", "deposits-inward", "dead")
    sig_b = b.expect_signal("trx-deposit-b", "deposits-inward", "dead")

    # Ops on signals: discard one dead signal, replay the refused 4pass one (delivered now).
    b.cli("dlq", "discard", f"sig_{sig_b}", "--reason", "test transfer, no hedge wanted")
    b.cli("dlq", "replay", f"sig_{sig_5006}", "--reason", "4pass order validation fixed")
    b.run_jobs()
    b.expect_signal("htx-5006-filled", "hedge-btc-fills", "delivered")
    b.expect_signal("trx-deposit-b", "deposits-inward", "discarded")

    # Poison events, each dead at once in the worker: an order that changes side, symbols
    # that do not split into base and quote.
    b.post_htx(
        "htx-5001-side-change",
        htx(5001, "canceled", "0.03", "1260.7", "0.00006", type="sell-limit"),
    )
    b.post_htx(
        "htx-5101-dogedai",
        htx(5101, "filled", "100", "8", "0.1", symbol="dogedai", amount="100", price="0.08"),
    )
    b.post_htx(
        "htx-5102-abcxyz",
        htx(5102, "filled", "1", "1", "0", symbol="abcxyz", amount="1", price="1"),
    )
    b.post_htx(
        "htx-5103-abcxyz",
        htx(5103, "partial-filled", "1", "2", "0", symbol="abcxyz", amount="2", price="2"),
    )
    b.run_jobs()
    b.expect(
        **{
            "htx-5001-side-change": "dead",
            "htx-5101-dogedai": "dead",
            "htx-5102-abcxyz": "dead",
            "htx-5103-abcxyz": "dead",
        }
    )

    # Ops on events: discard by the CLI and by the admin API; a refused discard of an applied
    # event; an admin replay of an applied event (already_applied).
    b.cli("dlq", "discard", b.ids["htx-5102-abcxyz"], "--reason", "test order on an unlisted pair")
    b.admin_post(
        f"/admin/events/{b.ids['htx-5103-abcxyz']}/discard",
        {"reason": "duplicate of a manual booking"},
        actor="alice",
    )
    b.cli("dlq", "discard", b.ids["htx-5001-filled"], "--reason", "wrong account", expect=1)
    replayed = b.admin_post(
        f"/admin/events/{b.ids['htx-5002-partial-canceled']}/replay",
        {"reason": "check it is applied"},
        actor="bob",
    )
    if replayed.get("outcome") != "already_applied":
        fail(f"admin replay of an applied event: {replayed}")
    b.expect(**{"htx-5102-abcxyz": "discarded", "htx-5103-abcxyz": "discarded"})

    # The cause of the dogedai dead letter fixed (dai made a quote currency), then replayed.
    b.start(quote_dai=True)
    b.cli(
        "dlq",
        "replay",
        b.ids["htx-5101-dogedai"],
        "--reason",
        "added dai to ledger.quote_currencies",
    )
    b.run_jobs()
    b.expect(**{"htx-5101-dogedai": "processed", "htx-5001-side-change": "dead"})

    # A retrying event: inserts into orders fail (fault injection) for one receipt.
    b.break_orders()
    try:
        b.post_htx("htx-5008-retrying", htx(5008, "submitted", "0", "0", "0"))
        b.run_jobs()
    finally:
        b.heal_orders()
    b.expect(**{"htx-5008-retrying": "retrying"})

    # A received event no worker has taken (its job is lost with Redis: the sweep would queue it).
    b.post_htx("htx-5009-received", htx(5009, "submitted", "0", "0", "0"))
    b.expect(**{"htx-5009-received": "received"})
    b.stop()
    out = b.cli("ledger", "verify")
    print(out.strip(), file=sys.stderr)


# --- dumps, restores and counts ----------------------------------------------------------------


def table_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            names = sorted(inspect(conn).get_table_names())
            return {
                n: int(conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one())  # noqa: S608
                for n in names
            }
    finally:
        engine.dispose()


def status_counts(database_url: str) -> dict[str, dict[str, int]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                table: {
                    str(s): int(n)
                    for s, n in conn.execute(
                        text(
                            f"SELECT status, count(*) FROM {table} GROUP BY status ORDER BY status"  # noqa: S608
                        )
                    )
                }
                for table in ("inbound_events", "signals")
            }
    finally:
        engine.dispose()


def signal_ids(database_url: str) -> list[int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [
                int(i) for i in conn.execute(text("SELECT id FROM signals ORDER BY id")).scalars()
            ]
    finally:
        engine.dispose()


def dump_sqlite(path: Path, out: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        out.write_text("\n".join(conn.iterdump()) + "\n", encoding="utf-8")
    finally:
        conn.close()


def restore_sqlite(dump: Path, path: Path) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(dump.read_text(encoding="utf-8"))
    finally:
        conn.close()


def psql(server: str, database: str, *args: str) -> str:
    user, _, hostport = server.partition("@")
    host, _, port = hostport.partition(":")
    result = subprocess.run(
        [
            "psql",
            "-h",
            host,
            "-p",
            port or "5432",
            "-U",
            user,
            "-d",
            database,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        fail(f"psql {' '.join(args)}: {result.stderr}")
    return result.stdout


def fresh_pg(server: str, name: str) -> None:
    if not name.startswith("hl_fixture"):
        fail(f"refusing to touch PostgreSQL database {name!r} (names must start hl_fixture)")
    psql(server, "postgres", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(server, "postgres", "-c", f"CREATE DATABASE {name}")


def dump_pg(server: str, name: str, out: Path) -> None:
    user, _, hostport = server.partition("@")
    host, _, port = hostport.partition(":")
    # pg_dump 15.14/16.10/17.6 and later write a psql "restrict" line with a random key unless
    # given one: a fixed key keeps a regenerated dump comparable with the committed one.
    helptext = subprocess.run(
        ["pg_dump", "--help"], capture_output=True, text=True, check=False
    ).stdout
    fixed_key = ["--restrict-key=hookledgerfixture010"] if "--restrict-key" in helptext else []
    with out.open("w", encoding="utf-8") as fh:
        subprocess.run(
            [
                "pg_dump",
                "-h",
                host,
                "-p",
                port or "5432",
                "-U",
                user,
                "--no-owner",
                "--no-privileges",
                *fixed_key,
                name,
            ],
            stdout=fh,
            check=True,
        )


def pg_url(server: str, name: str) -> str:
    return f"postgresql+psycopg://{server}/{name}"


# --- main -------------------------------------------------------------------------------------


def check_release(checkout: Path, *, allow_other_commit: bool) -> str:
    import app
    import workers

    for module in (app, workers):
        where = Path(module.__file__ or "").resolve()
        if checkout.resolve() not in where.parents:
            fail(
                f"{module.__name__} is imported from {where}, not from {checkout}: run with "
                f"PYTHONPATH={checkout} and the checkout as the working directory"
            )
    found = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        fail(f"{checkout} is not a git checkout: {found.stderr.strip()}")
    head = found.stdout.strip()
    if not head.startswith(RELEASE_COMMIT) and not allow_other_commit:
        fail(f"{checkout} is at {head}, not release 0.1.0 ({RELEASE_COMMIT})")
    dirty = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if dirty and not allow_other_commit:
        fail(f"{checkout} has local changes:\n{dirty}")
    return head


def read_back(checkout: Path, workdir: Path, database_url: str, redis_url: str) -> dict[str, Any]:
    """0.1.0's answers on a restored database: the reads and ``hookledger ledger verify``."""
    from starlette.testclient import TestClient

    from app.main import create_app
    from app.settings import load_settings

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "hookledger.toml"
    config.write_text(
        config_text(
            fourpass_url=PLACEHOLDER_FOURPASS, receiver_url=PLACEHOLDER_RECEIVER, quote_dai=True
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "HOOKLEDGER_CONFIG": str(config),
        "HOOKLEDGER_DATABASE_URL": database_url,
        "HOOKLEDGER_REDIS_URL": redis_url,
        "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOOKLEDGER_LOG_FORMAT": "json",
        "HOOKLEDGER_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    }
    (workdir / "metrics").mkdir(exist_ok=True)
    settings = load_settings(env)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        reads = collect_reads(
            lambda path, headers: client.get(path, headers=headers),
            signal_ids=signal_ids(database_url),
        )
    bad = [r for r in reads if r["status"] != 200]
    if bad:
        fail(f"reads that did not answer 200: {[(r['path'], r['status']) for r in bad]}")
    verify = subprocess.run(
        [sys.executable, "-m", "app.cli", "ledger", "verify"],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if verify.returncode != 0:
        fail(f"ledger verify failed on the restored database:\n{verify.stdout}\n{verify.stderr}")
    return {
        "requests": reads,
        "ledger_verify": {
            "command": "hookledger ledger verify",
            "exit_code": verify.returncode,
            "stdout": verify.stdout,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path.cwd(),
        help="the 0.1.0 checkout (default: the working directory)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the fixture directory (tests/fixtures/release-0.1.0)",
    )
    parser.add_argument(
        "--pg-server",
        default="root@127.0.0.1:5432",
        help="USER@HOST:PORT of PostgreSQL (trust auth)",
    )
    parser.add_argument(
        "--pg-db", default="hl_fixture_010", help="database to build in (dropped and made again)"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/5", help="Redis database to use (flushed)"
    )
    parser.add_argument(
        "--only",
        choices=DATABASES,
        action="append",
        help="build only this database (the others' reads are kept)",
    )
    parser.add_argument(
        "--allow-other-commit", action="store_true", help="do not insist on commit 4e2972a"
    )
    args = parser.parse_args()

    checkout = args.checkout.resolve()
    # This process runs the web app and the workers too: quiet logs, metrics out of the checkout.
    os.environ["HOOKLEDGER_LOG_LEVEL"] = "WARNING"
    os.environ["HOOKLEDGER_LOG_FORMAT"] = "json"
    metrics = Path(tempfile.mkdtemp(prefix="hl-fixture-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    sys.path.insert(0, str(checkout))
    head = check_release(checkout, allow_other_commit=args.allow_other_commit)
    from redis import Redis

    from tests.counterparts import FourPass, Receiver, Served  # 0.1.0's fake counterparts

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    reads_path = out / "reads.json"
    reads: dict[str, Any] = loads_exact(reads_path.read_text()) if reads_path.exists() else {}
    summary: dict[str, Any] = {}
    redis = Redis.from_url(args.redis_url)

    for kind in args.only or DATABASES:
        redis.flushdb()
        work = Path(tempfile.mkdtemp(prefix=f"hl-fixture-{kind}-"))
        try:
            if kind == "sqlite":
                database_url = f"sqlite:///{work / 'build.db'}"
            else:
                fresh_pg(args.pg_server, args.pg_db)
                database_url = pg_url(args.pg_server, args.pg_db)
            fourpass = FourPass(token=FOURPASS_TOKEN, secret=FOURPASS_SECRET)
            receiver = Receiver(WEBHOOK_SECRET)
            with Served(fourpass.app()) as fp, Served(receiver.app()) as rc:
                fourpass.url, receiver.url = fp.url, rc.url  # type: ignore[attr-defined]
                build = Build(
                    checkout=checkout,
                    workdir=work / "build",
                    database_url=database_url,
                    redis_url=args.redis_url,
                    fourpass=fourpass,
                    receiver=receiver,
                )
                make_data(build)
            redis.flushdb()  # the received event's job goes: the dump is the database alone

            dump = out / f"{kind}.sql"
            if kind == "sqlite":
                dump_sqlite(work / "build.db", dump)
                restored = work / "restored.db"
                restore_sqlite(dump, restored)
                restored_url = f"sqlite:///{restored}"
            else:
                dump_pg(args.pg_server, args.pg_db, dump)
                scratch = f"{args.pg_db}_restore"
                fresh_pg(args.pg_server, scratch)
                psql(args.pg_server, scratch, "-f", str(dump))
                restored_url = pg_url(args.pg_server, scratch)
            built, back = table_counts(database_url), table_counts(restored_url)
            if built != back:
                fail(f"{kind}: the restored dump has other row counts: {built} vs {back}")
            reads[kind] = read_back(checkout, work / "read", restored_url, args.redis_url)
            summary[kind] = {
                "tables": back,
                "statuses": status_counts(restored_url),
                "events": build.ids,
                "signals": build.signals,
            }
            if kind == "postgresql":
                psql(
                    args.pg_server,
                    "postgres",
                    "-c",
                    f"DROP DATABASE IF EXISTS {args.pg_db}_restore WITH (FORCE)",
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)
            redis.flushdb()

    reads["made_by"] = {
        "commit": head,
        "script": "scripts/make_release_fixture.py",
        "read_with": "hookledger.toml in this directory; HOOKLEDGER_ADMIN_TOKEN=" + ADMIN_TOKEN,
    }
    ordered = {k: reads[k] for k in ("made_by", *DATABASES) if k in reads}
    reads_path.write_text(dumps_exact(ordered) + "\n", encoding="utf-8")
    (out / "hookledger.toml").write_text(
        config_text(
            fourpass_url=PLACEHOLDER_FOURPASS, receiver_url=PLACEHOLDER_RECEIVER, quote_dai=True
        )
    )
    shutil.rmtree(metrics, ignore_errors=True)
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
