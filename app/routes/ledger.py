"""The accountants' API under ``/account/v1``: signed with ``X-API-*`` headers, scoped to the
key's accounts, answering ``{"code": 0, "data": ...}`` or the error envelope."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import kinds
from app.domain import apikeys
from app.domain.apikeys import ApiError, ApiKey
from app.kinds.base import Listing
from app.responses import json_response
from app.store import ledger as queries
from app.store.db import read_only
from app.timeparse import iso_seconds, parse_day, unix_seconds

# business_type values the published transactions API defines besides the source kinds' own
# (crypto_spot, fx_contract, deposit, ...): accepted as filters, never posted here.
GENERAL_BUSINESS_TYPES = frozenset({"hk_stock", "us_stock", "other"})


def business_types() -> frozenset[str]:
    """Every ``business_type`` a filter may name."""
    return GENERAL_BUSINESS_TYPES.union(*(kind.business_types for kind in kinds.every()))


MAX_PAGE_SIZE = 500
MAX_PAGE = 1_000_000
MAX_ROW_ID = 2**31 - 1  # postings.id is an INTEGER column: PostgreSQL refuses to compare more
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
T = TypeVar("T")


def _bad(message: str) -> ApiError:
    return ApiError(apikeys.BAD_PARAMETER, "bad parameter", message)


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

    def seconds(self, name: str, *, end_of_day: bool = False) -> int | None:
        """A Unix time in seconds (``from_date``, ``to_date``, ``as_of``). A date, a value the
        size of milliseconds or out of range is refused with a message that says what to send.
        ``end_of_day`` says which second of a date the message suggests."""
        raw = self._q.get(name)
        if raw is None or raw == "":
            return None
        if raw.isascii() and raw.isdigit():
            try:
                return unix_seconds(raw, dates=False)
            except ValueError as exc:
                raise _bad(f"{name} {exc}") from None
        if _DAY.fullmatch(raw):
            try:
                value = parse_day(raw, end_of_day=end_of_day)
            except ValueError as exc:
                raise _bad(f"{name} {exc}") from None
            raise _bad(
                f"{name} takes Unix seconds, not a date: for {raw} send {value} "
                f"({iso_seconds(value)})"
            )
        shown = raw[:40] + ("..." if len(raw) > 40 else "")
        raise _bad(f"{name} {shown!r} is not Unix seconds (e.g. 1704067200 is 2024-01-01)")

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
        raise ApiError(
            apikeys.UNAVAILABLE,
            "ledger unavailable",
            "the ledger database did not answer; try again shortly",
        ) from exc


def _ok(data: Any) -> Response:
    return json_response({"code": 0, "data": data})


def api(handler: Callable[[Request, ApiKey], Any]) -> Callable[[Request], Any]:
    """Authenticate, run ``handler``, map ``ApiError`` to the error envelope."""

    async def endpoint(request: Request) -> Response:
        try:
            key = await _authenticate(request)
            return _ok(await handler(request, key))
        except ApiError as exc:
            return json_response(exc.body(), exc.http_status)

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
    known_types = business_types()
    unknown = sorted(set(types) - known_types)
    if unknown:
        known = ", ".join(sorted(known_types))
        raise _bad(f"unknown business_type {', '.join(unknown)}; use one of {known}")
    io_type = params.text("io_type")
    if io_type not in (None, "in", "out"):
        raise _bad("io_type must be 'in' or 'out'")
    from_date = params.seconds("from_date")
    to_date = params.seconds("to_date", end_of_day=True)
    if from_date is not None and to_date is not None and from_date > to_date:
        raise _bad(
            f"from_date {from_date} ({iso_seconds(from_date)}) is after "
            f"to_date {to_date} ({iso_seconds(to_date)})"
        )
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
    as_of = params.seconds("as_of", end_of_day=True)

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


def _listing(listing: Listing) -> Callable[[Request], Any]:
    """``GET /account/v1/{listing.name}``: a page of the listing's rows of the key's accounts."""

    @api
    async def endpoint(request: Request, key: ApiKey) -> dict[str, Any]:
        params = Params(request, {"account_id", "page", "page_size"})
        page, page_size = params.paging()
        accounts = _accounts(key, params.text("account_id"))

        def query(session: Session) -> dict[str, Any]:
            total, rows = queries.page_of(
                session, listing.model, accounts=accounts, page=page, page_size=page_size
            )
            return {
                "total_records": total,
                "page": page,
                "page_size": page_size,
                listing.name: [listing.row(r) for r in rows],
            }

        return await _read(request, query)

    return endpoint


def _detail(listing: Listing) -> Callable[[Request], Any]:
    """``GET /account/v1/{listing.name}/{source}/{ident}``: one aggregate's full record."""
    assert listing.detail is not None
    detail = listing.detail

    @api
    async def endpoint(request: Request, key: ApiKey) -> dict[str, Any]:
        Params(request, set())
        source = request.path_params["source"]
        ident = request.path_params[listing.detail_param]

        def query(session: Session) -> dict[str, Any] | None:
            found = detail(session, source, ident)
            if found is None or not key.may_read(found[0]):
                return None
            return found[1]

        record = await _read(request, query)
        if record is None:
            # Not found and not allowed look the same: a key learns nothing of other accounts.
            raise ApiError(
                apikeys.NOT_FOUND,
                f"{listing.singular} not found",
                f"no {listing.singular} {ident} of {source} for this key",
            )
        return record

    return endpoint


def listing_routes() -> list[Route]:
    """The accountants' API routes of every source kind's listings."""
    routes = []
    for kind in kinds.every():
        for listing in kind.listings:
            base = f"/account/v1/{listing.name}"
            routes.append(Route(base, _listing(listing), methods=["GET"]))
            if listing.detail is not None:
                path = f"{base}/{{source}}/{{{listing.detail_param}}}"
                routes.append(Route(path, _detail(listing), methods=["GET"]))
    return routes
