"""An HTX exchange, simulated: spot limit orders and their trades, sent to hookledger as
HTX's order callbacks (seed 001), and answered through HTX's REST order query.

Truth: ``count`` orders on a few symbols, each ``submitted``, then one to three fills
(``partial-filled`` ... ``filled``), or one or two fills then ``partial-canceled``, or
``canceled`` without a fill. Every amount is an exact decimal; fees are 0.2% of what the
order receives (buy: the base currency, sell: the quote currency), as HTX charges them.

Callbacks go to ``POST {hook-url}/hooks/{source}`` with ``X-Signature``, the lowercase hex
HMAC-SHA256 of the raw body (hookledger's ``hmac-sha256`` source auth), secret from
``SIM_HOOK_SECRET``; a failed try is retried four times with backoff.

REST (HTX's spot API, signature version 2): ``GET /v1/order/orders/{order-id}`` and
``GET /v1/order/orders/{order-id}/matchresults``; the query carries ``AccessKeyId``,
``SignatureMethod=HmacSHA256``, ``SignatureVersion=2``, ``Timestamp`` (UTC,
``YYYY-MM-DDThh:mm:ss``) and ``Signature``, the base64 HMAC-SHA256 with the secret key of
``"GET\\n{host}\\n{path}\\n{the other parameters sorted by name, url-encoded, joined by &}"``.
The keys come from ``SIM_ACCESS_KEY`` and ``SIM_SECRET_KEY``. Answers are HTX's envelope:
``{"status": "ok", "data": ...}`` or ``{"status": "error", "err-code", "err-msg", "data":
null}``; an order shows the state it has reached in the simulation so far.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any
from urllib.parse import quote, unquote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.simulators.common import (
    Behaviour,
    Callback,
    Counterpart,
    Faults,
    behaviour_from,
    build_app,
    common_arguments,
    faults_from,
    secret_from_env,
    serve,
    start_ms_of,
)

# symbol -> base, quote, reference price, price tick, amount lot
SYMBOLS: dict[str, tuple[str, str, Decimal, Decimal, Decimal]] = {
    "btcusdt": ("BTC", "USDT", Decimal("42000.00"), Decimal("0.01"), Decimal("0.0001")),
    "ethusdt": ("ETH", "USDT", Decimal("2250.00"), Decimal("0.01"), Decimal("0.001")),
    "ethbtc": ("ETH", "BTC", Decimal("0.053100"), Decimal("0.000001"), Decimal("0.001")),
    "trxusdt": ("TRX", "USDT", Decimal("0.1050"), Decimal("0.0001"), Decimal("0.1")),
}
FEE_RATE = Decimal("0.002")
ORDER_ID_BASE = 600_000_000_000
FINAL = frozenset({"filled", "partial-canceled", "canceled"})
RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0)
STALE_AFTER_S = 300  # HTX refuses a Timestamp further than this from its clock


def text(value: Decimal) -> str:
    """Plain decimal text, never an exponent."""
    return format(value, "f")


def canonical(value: Decimal) -> str:
    """The normalised amount hookledger puts in an idempotency key (``0.0300`` -> ``0.03``)."""
    return format(value.normalize(), "f") if value else "0"


def make_truth(seed: int, count: int, start_ms: int, accounts: tuple[str, ...]) -> dict[str, Any]:
    """The orders of simulation ``seed``: each order's life as ``steps`` (state and cumulative
    amounts after each event) and its ``trades``. Order ``i`` depends only on ``seed`` and
    ``i``, so a larger count adds orders without changing the first ones."""
    return {
        "kind": "htx",
        "seed": seed,
        "count": count,
        "start_ms": start_ms,
        "symbols": {s: [base, quote] for s, (base, quote, *_rest) in SYMBOLS.items()},
        "orders": [_order(seed, i, start_ms, accounts) for i in range(count)],
    }


def _split(units: int, parts: int, rng: random.Random) -> list[int]:
    cuts = sorted(rng.sample(range(1, units), parts - 1)) if parts > 1 else []
    edges = [0, *cuts, units]
    return [b - a for a, b in pairwise(edges)]


def _order(seed: int, i: int, start_ms: int, accounts: tuple[str, ...]) -> dict[str, Any]:
    rng = random.Random(f"htx:{seed}:{i}")
    symbol = rng.choice(sorted(SYMBOLS))
    base, quote_ccy, ref, tick, lot = SYMBOLS[symbol]
    side = rng.choice(("buy", "sell"))
    # Within 2% of the reference price, so every price (and every fill's) stays positive.
    spread = int(ref * Decimal("0.02") / tick)
    price = ref + tick * rng.randint(-spread, spread)
    units = rng.randint(1, 5000)
    amount = lot * units
    outcome = rng.choices(("filled", "partial-canceled", "canceled"), (60, 25, 15))[0]
    if outcome == "partial-canceled" and units < 2:
        outcome = "filled"
    if outcome == "filled":
        pieces = _split(units, min(units, rng.randint(1, 3)), rng)
    elif outcome == "partial-canceled":
        done = rng.randint(1, units - 1)
        pieces = _split(done, min(done, rng.randint(1, 2)), rng)
    else:
        pieces = []
    order_id = ORDER_ID_BASE + i
    at = start_ms + i * 7
    filled = cash = fees = Decimal(0)
    steps = [_step("submitted", filled, cash, fees, at, [])]
    trades: list[dict[str, Any]] = []
    for k, piece_units in enumerate(pieces):
        at += rng.randint(20, 400)
        piece = lot * piece_units
        # A limit order fills at its price or better.
        better = tick * rng.randint(0, 3)
        trade_price = price - better if side == "buy" else price + better
        trade_cash = piece * trade_price
        fee = piece * FEE_RATE if side == "buy" else trade_cash * FEE_RATE
        filled, cash, fees = filled + piece, cash + trade_cash, fees + fee
        trade = {
            "id": 90_000_000 + i * 10 + k,
            "trade-id": 100_000 + i * 10 + k,
            "match-id": 50_000_000 + i * 10 + k,
            "price": text(trade_price),
            "amount": text(piece),
            "fees": text(fee),
            "fee-currency": (base if side == "buy" else quote_ccy).lower(),
            "role": rng.choice(("maker", "taker")),
            "created-at": at,
        }
        trades.append(trade)
        last = k == len(pieces) - 1
        state = "filled" if last and outcome == "filled" else "partial-filled"
        steps.append(_step(state, filled, cash, fees, at, [trade]))
    if outcome != "filled":
        at += rng.randint(20, 400)
        steps.append(_step(outcome, filled, cash, fees, at, []))
    return {
        "id": order_id,
        "client-order-id": f"sim-{seed}-{i}",
        "account-id": accounts[i % len(accounts)],
        "symbol": symbol,
        "base": base,
        "quote": quote_ccy,
        "side": side,
        "type": f"{side}-limit",
        "amount": text(amount),
        "price": text(price),
        "created-at": start_ms + i * 7,
        "state": steps[-1]["state"],
        "filled-amount": text(filled),
        "filled-cash-amount": text(cash),
        "filled-fees": text(fees),
        "trades": trades,
        "steps": steps,
    }


def _step(
    state: str, filled: Decimal, cash: Decimal, fees: Decimal, at: int, trades: list[Any]
) -> dict[str, Any]:
    return {
        "state": state,
        "filled-amount": text(filled),
        "filled-cash-amount": text(cash),
        "filled-fees": text(fees),
        "at": at,
        "trades": [t["trade-id"] for t in trades],
    }


def callback_body(order: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """HTX's order callback (seed 001's fields) for ``order`` after ``step``."""
    by_id = {t["trade-id"]: t for t in order["trades"]}
    body: dict[str, Any] = {
        "order-id": order["id"],
        "client-order-id": order["client-order-id"],
        "account-id": int(order["account-id"]),
        "symbol": order["symbol"],
        "type": order["type"],
        "amount": order["amount"],
        "price": order["price"],
        "created-at": order["created-at"],
        "filled-amount": step["filled-amount"],
        "filled-cash-amount": step["filled-cash-amount"],
        "filled-fees": step["filled-fees"],
        "source": "api",
        "state": step["state"],
    }
    if step["trades"]:
        body["trade"] = [
            {
                "trade-id": by_id[t]["trade-id"],
                "trade-time": by_id[t]["created-at"],
                "trade-price": by_id[t]["price"],
                "trade-amount": by_id[t]["amount"],
            }
            for t in step["trades"]
        ]
    return body


def idempotency_key(order: dict[str, Any], step: dict[str, Any]) -> str:
    return f"{order['id']}:{step['state']}:{canonical(Decimal(step['filled-amount']))}"


def rest_signature(secret_key: str, host: str, path: str, params: dict[str, str]) -> str:
    """HTX's signature version 2 over a GET of ``path`` on ``host`` with ``params`` (without
    ``Signature``): base64 HMAC-SHA256 of the canonical request text."""
    query = "&".join(
        f"{quote(name, safe='-_.~')}={quote(params[name], safe='-_.~')}" for name in sorted(params)
    )
    payload = f"GET\n{host.lower()}\n{path}\n{query}"
    digest = hmac.new(secret_key.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _error(code: str, message: str, status: int = 200) -> Response:
    return JSONResponse(
        {"status": "error", "err-code": code, "err-msg": message, "data": None}, status
    )


class Htx(Counterpart):
    name = "htx"

    def __init__(
        self,
        truth: dict[str, Any],
        *,
        hook_url: str,
        source: str,
        hook_secret: str,
        access_key: str,
        secret_key: str,
        behaviour: Behaviour,
        faults: Faults,
    ) -> None:
        self.truth = truth
        self.orders = {str(o["id"]): o for o in truth["orders"]}
        self.url = f"{hook_url.rstrip('/')}/hooks/{source}"
        self._hook_secret = hook_secret.encode()
        self._access_key = access_key
        self._secret_key = secret_key
        self.behaviour = behaviour
        self.faults = faults
        self.api_counts = Counter()
        self._by_order: dict[str, list[Callback]] = {}

    def truth_json(self) -> dict[str, Any]:
        return self.truth

    def callbacks(self) -> list[Callback]:
        timed = []
        for order in self.truth["orders"]:
            own = self._by_order.setdefault(str(order["id"]), [])
            for n, step in enumerate(order["steps"]):
                cb = Callback(
                    ident=str(order["id"]),
                    step=n,
                    key=idempotency_key(order, step),
                    body=callback_body(order, step),
                    recoverable=True,
                )
                own.append(cb)
                timed.append((step["at"], order["id"], n, cb))
        timed.sort(key=lambda t: t[:3])
        return [t[3] for t in timed]

    def mangle(self, body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        changed = dict(body)
        how = rng.randrange(3)
        if how == 0:  # an amount as an object with its currency
            changed["filled-amount"] = {"value": body["filled-amount"], "scale": 8}
        elif how == 1:  # the order id under a new name
            changed["orderId"] = changed.pop("order-id")
        else:  # a cash amount with a thousands separator
            cash = Decimal(body["filled-cash-amount"])
            changed["filled-cash-amount"] = f"{cash:,f}" if cash >= 1000 else f"{cash:f} USDT"
        return changed

    async def post(self, client: httpx.AsyncClient, body: bytes) -> httpx.Response:
        signature = hmac.new(self._hook_secret, body, hashlib.sha256).hexdigest()
        headers = {"content-type": "application/json", "x-signature": signature}
        return await client.post(self.url, content=body, headers=headers)

    # --- the REST query API -------------------------------------------------------------

    def _current(self, order_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The order and the step it has reached so far, or ``None`` before it exists."""
        order = self.orders.get(order_id)
        played = [cb.step for cb in self._by_order.get(order_id, ()) if cb.played]
        if order is None or not played:
            return None
        return order, order["steps"][max(played)]

    def _refused(self, request: Request) -> Response | None:
        """The answer to a call that is rate limited, failed on purpose or not signed right;
        ``None`` for a call to answer from the truth."""
        fault = self.faults.next_fault()
        if fault == "rate_limited":
            self.api_counts["rate_limited"] += 1
            return _error("too-many-request", "Too many requests, please retry later", 429)
        if fault == "error":
            self.api_counts["errors"] += 1
            return _error("gateway-internal-error", "System busy, please try again later",
                          self.faults.error_status)  # fmt: skip
        params: dict[str, str] = {}
        for part in request.scope["query_string"].decode("latin-1").split("&"):
            if part:
                name, _, value = part.partition("=")
                params[unquote(name)] = unquote(value)
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != self._access_key:
            self.api_counts["unknown_key"] += 1
            return _error(
                "api-signature-not-valid",
                "Signature not valid: Incorrect Access key [Access key错误]",
            )
        if params.get("SignatureMethod") != "HmacSHA256" or params.get("SignatureVersion") != "2":
            self.api_counts["bad_signature"] += 1
            return _error("api-signature-not-valid", "Signature not valid: unsupported method")
        try:
            stamp = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            stamp = None
        now = datetime.now(UTC).replace(tzinfo=None)
        if stamp is None or abs((now - stamp).total_seconds()) > STALE_AFTER_S:
            self.api_counts["stale"] += 1
            return _error(
                "api-signature-not-valid",
                "Signature not valid: Invalid submission time or incorrect time format",
            )
        # HTX serves on 443, so its docs never say whether a port belongs in the signed host;
        # the Host header as sent and the name without its port both name this server.
        host = request.headers.get("host", "")
        hosts = {host, host.rsplit(":", 1)[0]} if ":" in host else {host}
        path = request.url.path
        expected = {rest_signature(self._secret_key, h, path, params) for h in hosts}
        if not any(hmac.compare_digest(signature, e) for e in expected):
            self.api_counts["bad_signature"] += 1
            return _error("api-signature-not-valid", "Signature not valid: Verification failure")
        return None

    async def order_detail(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        found = self._current(request.path_params["order_id"])
        if found is None:
            self.api_counts["not_found"] += 1
            return _error("base-record-invalid", "record invalid")
        order, step = found
        self.api_counts["order_detail"] += 1
        final = step["state"] in FINAL
        data = {
            "id": order["id"],
            "symbol": order["symbol"],
            "account-id": int(order["account-id"]),
            "client-order-id": order["client-order-id"],
            "amount": order["amount"],
            "price": order["price"],
            "created-at": order["created-at"],
            "type": order["type"],
            # HTX's order detail spells these ``field-*`` (its documented field names);
            # its newer pages say ``filled-*``. Both are sent, with the same values.
            "field-amount": step["filled-amount"],
            "field-cash-amount": step["filled-cash-amount"],
            "field-fees": step["filled-fees"],
            "filled-amount": step["filled-amount"],
            "filled-cash-amount": step["filled-cash-amount"],
            "filled-fees": step["filled-fees"],
            "finished-at": step["at"] if final else 0,
            "source": "api",
            "state": step["state"],
            "canceled-at": step["at"] if step["state"].endswith("canceled") else 0,
        }
        return JSONResponse({"status": "ok", "data": data})

    async def match_results(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        found = self._current(request.path_params["order_id"])
        if found is None:
            self.api_counts["not_found"] += 1
            return _error("base-record-invalid", "record invalid")
        order, step = found
        self.api_counts["match_results"] += 1
        done = {t for s in order["steps"][: order["steps"].index(step) + 1] for t in s["trades"]}
        data = [
            {
                "id": t["id"],
                "order-id": order["id"],
                "match-id": t["match-id"],
                "trade-id": t["trade-id"],
                "symbol": order["symbol"],
                "price": t["price"],
                "created-at": t["created-at"],
                "type": order["type"],
                "filled-amount": t["amount"],
                "filled-fees": t["fees"],
                "fee-currency": t["fee-currency"],
                "source": "spot-api",
                "role": t["role"],
                "filled-points": "0",
                "fee-deduct-currency": "",
                "fee-deduct-state": "done",
            }
            for t in order["trades"]
            if t["trade-id"] in done
        ]
        return JSONResponse({"status": "ok", "data": data})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/order/orders/{order_id}", self.order_detail),
            Route("/v1/order/orders/{order_id}/matchresults", self.match_results),
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.simulators.htx", description=__doc__)
    common_arguments(parser)
    parser.add_argument("--accounts", default="1001", help="comma-separated HTX account ids")
    args = parser.parse_args(argv)
    truth = make_truth(args.seed, args.count, start_ms_of(args), tuple(args.accounts.split(",")))
    htx = Htx(
        truth,
        hook_url=args.hook_url,
        source=args.source,
        hook_secret=secret_from_env("SIM_HOOK_SECRET"),
        access_key=secret_from_env("SIM_ACCESS_KEY"),
        secret_key=secret_from_env("SIM_SECRET_KEY"),
        behaviour=behaviour_from(args, RETRY_DELAYS_S),
        faults=faults_from(args),
    )
    serve(build_app(htx, args.seed, autostart=args.autostart), args.host, args.port)


if __name__ == "__main__":
    main()
