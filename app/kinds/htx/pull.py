"""Asking HTX's REST API for an order: ``GET /v1/order/orders/{order-id}`` and, when it has
fills, ``GET /v1/order/orders/{order-id}/matchresults``, each signed as HTX signs REST calls
(signature version 2, ``sign``). HTX answers ``{"status": "ok", "data": ...}`` or
``{"status": "error", "err-code": ..., "err-msg": ...}``; ``base-record-invalid`` (no such
order) and HTTP 404 mean HTX does not know the order.

The answer becomes the body of a callback (seed 001), so ``parse`` gives it the key a pushed
callback in that state has (``order-id:state:filled-amount``). REST and callback name fields
differently:

- ``order-id``: REST ``id``;
- ``filled-amount``, ``filled-cash-amount``, ``filled-fees``: REST ``filled-*``, else the older
  ``field-amount``, ``field-cash-amount``, ``field-fees``;
- ``client-order-id``, ``account-id``, ``symbol``, ``type``, ``amount``, ``price``,
  ``created-at``, ``source``, ``state``: the same names;
- ``trade[]``: the match results, ``trade-id`` as is, ``trade-price`` from ``price``,
  ``trade-amount`` from ``filled-amount``, ``trade-time`` from ``created-at``.

A market order's REST ``price`` is ``"0"`` or absent; it is left out then, as the callback does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson

from app.kinds.base import Pulled, PullFailed
from app.kinds.pulling import excerpt, get

_NOT_FOUND = frozenset({"base-record-invalid"})
_SAME = ("client-order-id", "account-id", "symbol", "type", "amount", "created-at", "source")
_FILLED = ("filled-amount", "filled-cash-amount", "filled-fees")


def sign(method: str, host: str, path: str, params: dict[str, str], secret_key: str) -> str:
    """HTX signature version 2: HMAC-SHA256 with the secret key over
    ``METHOD\\nhost\\npath\\nquery`` (the parameters sorted by name, URL-encoded), base64."""
    query = urlencode(sorted(params.items()), quote_via=quote)
    text = f"{method.upper()}\n{host.lower()}\n{path}\n{query}"
    digest = hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_params(
    method: str, base_url: str, path: str, *, access_key: str, secret_key: str, now: datetime
) -> dict[str, str]:
    """The query parameters of a signed request, ``Signature`` included."""
    params = {
        "AccessKeyId": access_key,
        "SignatureMethod": "HmacSHA256",
        "SignatureVersion": "2",
        "Timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    }
    host = urlsplit(base_url).netloc.rsplit("@", 1)[-1]
    params["Signature"] = sign(method, host, path, params, secret_key)
    return params


async def pull_order(
    client: httpx.AsyncClient,
    base_url: str,
    access_key: str,
    secret_key: str,
    ident: str,
    *,
    now: datetime | None = None,
) -> Pulled:
    """The current state of order ``ident`` as a callback body. Raises ``PullFailed``."""
    prefix = urlsplit(base_url).path.rstrip("/")
    path = f"{prefix}/v1/order/orders/{quote(ident, safe='')}"
    order = await _call(
        client, base_url, path, access_key=access_key, secret_key=secret_key, now=now
    )
    if order is None:
        return Pulled(missing=True)
    if not isinstance(order, dict) or str(order.get("id")) != ident:
        raise PullFailed(f"GET {path}: the answer is not order {ident}")
    body = callback_of(order)
    if _positive(body.get("filled-amount")):
        trades = await _call(
            client,
            base_url,
            f"{path}/matchresults",
            access_key=access_key,
            secret_key=secret_key,
            now=now,
        )
        if isinstance(trades, list):
            body["trade"] = [_trade(t) for t in trades if isinstance(t, dict)]
    return Pulled(bodies=(orjson.dumps(body),))


def callback_of(order: dict[str, Any]) -> dict[str, Any]:
    """A callback body (seed 001) carrying what a REST order record says."""
    body: dict[str, Any] = {"order-id": order.get("id")}
    for name in _SAME:
        if order.get(name) is not None:
            body[name] = order[name]
    if _positive(order.get("price")):
        body["price"] = order["price"]
    for name in _FILLED:
        value = order.get(name)
        if value is None:
            value = order.get(name.replace("filled-", "field-", 1))
        if value is not None:
            body[name] = value
    body["state"] = order.get("state")
    return body


def _trade(match: dict[str, Any]) -> dict[str, Any]:
    return {
        "trade-id": match.get("trade-id", match.get("id")),
        "trade-time": match.get("created-at"),
        "trade-price": match.get("price"),
        "trade-amount": match.get("filled-amount"),
    }


async def _call(
    client: httpx.AsyncClient,
    base_url: str,
    path: str,
    *,
    access_key: str,
    secret_key: str,
    now: datetime | None,
) -> Any:
    """``data`` of a signed GET of ``path``; None when HTX does not know the order."""
    what = f"GET {path}"
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    params = signed_params(
        "GET",
        base_url,
        path,
        access_key=access_key,
        secret_key=secret_key,
        now=now or datetime.now(UTC),
    )
    response = await get(client, origin + path, params=params, what=what)
    if response is None:
        return None
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise PullFailed(
            f"{what}: HTTP {response.status_code}, not JSON: {excerpt(response)}"
        ) from exc
    if not isinstance(answer, dict):
        raise PullFailed(f"{what}: not an HTX answer: {excerpt(response)}")
    if answer.get("status") != "ok":
        code = str(answer.get("err-code", ""))[:64]
        if code in _NOT_FOUND:
            return None
        message = str(answer.get("err-msg", ""))[:200]
        raise PullFailed(f"{what}: HTX error {code}: {message}")
    return answer.get("data")


def _positive(value: object) -> bool:
    try:
        return Decimal(str(value)) > 0
    except (InvalidOperation, ValueError):
        return False
