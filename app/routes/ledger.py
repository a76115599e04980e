"""The accountants' API under ``/account/v1``: signed with ``X-API-*`` headers, scoped to the
key's accounts, answering ``{"code": 0, "data": ...}`` or the error envelope."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response

from app.domain import apikeys
from app.domain.apikeys import ApiError, ApiKey
from app.responses import json_response
from app.store import ledger as queries
from app.store.db import read_only
from app.store.models import Contract, Deposit, Order

BUSINESS_TYPES = frozenset(
    {"hk_stock", "us_stock", "other", "crypto_spot", "fx_contract", "deposit"}
)
MAX_PAGE_SIZE = 500
MAX_PAGE = 1_000_000
MAX_ROW_ID = 2**31 - 1  # postings.id is an INTEGER column: PostgreSQL refuses to compare more
_INTEGER = re.compile(r"-?[0-9]{1,18}")
T = TypeVar("T")


def _bad(message: str) -> ApiError:
    return ApiError(400, apikeys.BAD_PARAMETER, "bad parameter", message)


class Params:
    """Query parameters, validated; unknown names are refused (a typo must not widen a query)."""

    def __init__(self, request: Request, allowed: set[str]) -> None:
        self._q = request.query_params
        unknown = sorted(set(self._q.keys()) - allowed)
        if unknown:
            raise _bad(f"unknown parameter(s): {', '.join(unknown)}")
        for name, value in self._q.multi_items():
            if "\x00" in value:
                # No column can hold NUL (PostgreSQL refuses it): no row can match such a value.
                raise _bad(f"{name} may not contain NUL (%00)")

    def integer(
        self, name: str, default: int | None = None, *, low: int = 0, high: int | None = None
    ) -> int | None:
        raw = self._q.get(name)
        if raw is None or raw == "":
            return default
        if not _INTEGER.fullmatch(raw):
            raise _bad(f"{name} must be an integer")
        value = int(raw)
        if value < low or (high is not None and value > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _bad(f"{name} must be {limit}")
        return value

    def text(self, name: str) -> str | None:
        raw = self._q.get(name)
        return raw if raw else None

    def paging(self) -> tuple[int, int]:
        page = self.integer("page", 1, low=1, high=MAX_PAGE)
        size = self.integer("page_size", 20, low=1, high=MAX_PAGE_SIZE)
        assert page is not None and size is not None
        return page, size


def _accounts(key: ApiKey, requested: str | None) -> list[str] | None:
    """The accounts a query may read: the requested one if allowed, else all of the key's."""
    if requested is not None:
        if not key.may_read(requested):
            raise ApiError(
                403,
                apikeys.ACCOUNT_FORBIDDEN,
                "account not allowed",
                f"this key may not read account {requested}",
            )
        return [requested]
    return None if "*" in key.accounts else list(key.accounts)


async def _authenticate(request: Request) -> ApiKey:
    keys: list[ApiKey] = request.app.state.api_keys
    return apikeys.authenticate(
        keys,
        request.headers,
        method=request.method,
        path=request.scope.get("raw_path", request.url.path.encode())
        .decode("latin-1")
        .split("?")[0],
        query=request.scope.get("query_string", b"").decode("latin-1"),
        now_ms=int(time.time() * 1000),
    )


async def _read(request: Request, fn: Callable[[Session], T]) -> T:
    engine = read_only(request.app.state.engine)

    def run() -> T:
        with Session(engine) as session:
            return fn(session)

    try:
        return await to_thread.run_sync(run)
    except (OperationalError, InterfaceError) as exc:
        raise ApiError(503, apikeys.UNAVAILABLE, "ledger unavailable", type(exc).__name__) from exc


def _ok(data: Any) -> Response:
    return json_response({"code": 0, "data": data})


def api(handler: Callable[[Request, ApiKey], Any]) -> Callable[[Request], Any]:
    """Authenticate, run ``handler``, map ``ApiError`` to the error envelope."""

    async def endpoint(request: Request) -> Response:
        try:
            key = await _authenticate(request)
            return _ok(await handler(request, key))
        except ApiError as exc:
            return json_response(exc.body(), exc.status)

    return endpoint


TX_PARAMS = {
    "page",
    "page_size",
    "business_type",
    "business_types",
    "io_type",
    "from_date",
    "to_date",
    "account_id",
    "as_of_id",
}


@api
async def transactions(request: Request, key: ApiKey) -> dict[str, Any]:
    params = Params(request, TX_PARAMS)
    page, page_size = params.paging()
    types: list[str] = []
    for name in ("business_type", "business_types"):
        raw = params.text(name)
        if raw:
            types += [t.strip() for t in raw.split(",") if t.strip()]
    unknown = sorted(set(types) - BUSINESS_TYPES)
    if unknown:
        known = ", ".join(sorted(BUSINESS_TYPES))
        raise _bad(f"unknown business_type {', '.join(unknown)}; use one of {known}")
    io_type = params.text("io_type")
    if io_type not in (None, "in", "out"):
        raise _bad("io_type must be 'in' or 'out'")
    from_date, to_date = params.integer("from_date"), params.integer("to_date")
    if from_date is not None and to_date is not None and from_date > to_date:
        raise _bad(f"from_date ({from_date}) is after to_date ({to_date})")
    accounts = _accounts(key, params.text("account_id"))
    as_of_id = params.integer("as_of_id", high=MAX_ROW_ID)

    def query(session: Session) -> dict[str, Any]:
        pinned = as_of_id if as_of_id is not None else queries.max_posting_id(session)
        flt = queries.PostingFilter(
            accounts=accounts,
            business_types=types or None,
            io_type=io_type,
            from_date=from_date,
            to_date=to_date,
            max_id=pinned,
        )
        total, rows = queries.page_of_postings(session, flt, page=page, page_size=page_size)
        return {
            "total_records": total,
            "page": page,
            "page_size": page_size,
            "as_of_id": pinned,
            "transactions": [queries.posting_row(r) for r in rows],
        }

    return await _read(request, query)


@api
async def balances(request: Request, key: ApiKey) -> dict[str, Any]:
    params = Params(request, {"account_id", "as_of"})
    accounts = _accounts(key, params.text("account_id"))
    as_of = params.integer("as_of")

    def query(session: Session) -> dict[str, Any]:
        rows = queries.balances_as_of(session, accounts, as_of)
        return {
            "as_of": as_of,
            "balances": [
                {
                    "account_id": queries.account_out(r.account_id),
                    "currency": r.currency,
                    "balance": r.balance,
                    "transactions": r.postings,
                    "last_transaction_id": r.last_transaction_id,
                }
                for r in rows
            ],
        }

    return await _read(request, query)


def _listing(
    model: Any, name: str, to_dict: Callable[[Any], dict[str, Any]]
) -> Callable[[Request], Any]:
    @api
    async def listing(request: Request, key: ApiKey) -> dict[str, Any]:
        params = Params(request, {"account_id", "page", "page_size"})
        page, page_size = params.paging()
        accounts = _accounts(key, params.text("account_id"))

        def query(session: Session) -> dict[str, Any]:
            total, rows = queries.page_of(
                session, model, accounts=accounts, page=page, page_size=page_size
            )
            return {
                "total_records": total,
                "page": page,
                "page_size": page_size,
                name: [to_dict(r) for r in rows],
            }

        return await _read(request, query)

    return listing


def _order_dict(o: Order) -> dict[str, Any]:
    return {
        "source": o.source,
        "order_id": o.order_id,
        "account_id": o.account_id,
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side,
        "type": o.order_type,
        "amount": o.amount,
        "price": o.price,
        "state": o.state,
        "filled_amount": o.filled_amount,
        "filled_cash_amount": o.filled_cash_amount,
        "filled_fees": o.filled_fees,
        "created_at": o.created_at_ms,
        "err_code": o.err_code,
        "err_msg": o.err_msg,
        "last_event_id": o.last_event_id,
    }


def _contract_dict(c: Contract) -> dict[str, Any]:
    return {
        "source": c.source,
        "position_id": c.position_id,
        "account_id": c.account_id,
        "parent_position_id": c.parent_position_id,
        "root_position_id": c.root_position_id,
        "c_order_id": c.c_order_id,
        "status": c.status,
        "buy_currency": c.buy_currency,
        "buy_amount": c.buy_amount,
        "sell_currency": c.sell_currency,
        "sell_amount": c.sell_amount,
        "price": c.price,
        "value_date": c.value_date,
        "violate_money": c.violate_money,
        "violate_currency": c.violate_currency,
        "last_event_id": c.last_event_id,
    }


def _deposit_dict(d: Deposit) -> dict[str, Any]:
    return {
        "source": d.source,
        "tx_hash": d.tx_hash,
        "account_id": d.account_id,
        "address": d.address,
        "from_address": d.from_address,
        "amount_sun": d.amount_sun,
        "amount": d.amount_trx,
        "currency": "TRX",
        "created_at": d.created_at_text,
        "event_id": d.event_id,
    }


orders = _listing(Order, "orders", _order_dict)
contracts = _listing(Contract, "contracts", _contract_dict)
deposits = _listing(Deposit, "deposits", _deposit_dict)


@api
async def order_detail(request: Request, key: ApiKey) -> dict[str, Any]:
    Params(request, set())
    source, order_id = request.path_params["source"], request.path_params["order_id"]

    def query(session: Session) -> dict[str, Any] | None:
        if "\x00" in source + order_id:  # no stored id holds NUL; PostgreSQL refuses to look
            return None
        order = session.exec(
            select(Order).where(col(Order.source) == source, col(Order.order_id) == order_id)
        ).first()
        if order is None or not key.may_read(order.account_id):
            return None
        history = queries.order_history(session, order)
        postings = queries.postings_of_events(session, [h["event_id"] for h in history])
        return {
            **_order_dict(order),
            "events": history,
            "trades": [
                {
                    "trade_id": t.trade_id,
                    "price": t.price,
                    "amount": t.amount,
                    "time": t.trade_time_ms,
                    "event_id": t.event_id,
                }
                for t in queries.order_trades(session, order)
            ],
            "transactions": [queries.posting_row(p) for p in postings],
        }

    found = await _read(request, query)
    if found is None:
        # Not found and not allowed look the same: a key learns nothing of other accounts.
        raise ApiError(
            404,
            apikeys.NOT_FOUND,
            "order not found",
            f"no order {order_id} of {source} for this key",
        )
    return found
