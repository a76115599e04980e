"""Asking the TRON energy platform for a rental order (seed 004): ``GET {base_url}/orders/{id}``
with the ``x-api-key`` header. The answer is the order as JSON (the push's fields without
``type``) or a text ``ERROR: reason``, usually with HTTP 200: a body that starts ``ERROR:`` is
an error whatever the status. ``ERROR: order not found`` (or HTTP 404) means the platform does
not know the order (``Pulled(missing=True)``); every other error raises ``PullFailed``.

The order becomes the body of a push (``{"type": "order", ...}``), so it gets the key a push of
that status has (``order:{id}:{status}``): a pulled status and a late push of it are one event.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson

from app.kinds.base import Pulled, PullFailed
from app.kinds.pulling import excerpt, get

_NOT_FOUND = "not found"


async def pull_rental(client: httpx.AsyncClient, base_url: str, api_key: str, ident: str) -> Pulled:
    """The current state of rental order ``ident``. Raises ``PullFailed``."""
    path = f"/orders/{quote(ident, safe='')}"
    what = f"GET {path}"
    response = await get(
        client, base_url.rstrip("/") + path, headers={"x-api-key": api_key}, what=what
    )
    if response is None:
        return Pulled(missing=True)
    text = response.text.lstrip()
    if text.startswith("ERROR"):
        reason = text.partition(":")[2].strip()[:200]
        if _NOT_FOUND in reason.lower():
            return Pulled(missing=True)
        raise PullFailed(f"{what}: ERROR: {reason}", outcome="error")
    if response.status_code != 200:
        raise PullFailed(f"{what}: HTTP {response.status_code}: {excerpt(response)}")
    try:
        data: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise PullFailed(f"{what}: the answer is not JSON: {excerpt(response)}") from exc
    if not isinstance(data, dict) or str(data.get("id")) != ident:
        raise PullFailed(f"{what}: the answer is not order {ident}: {excerpt(response)}")
    return Pulled(bodies=(orjson.dumps({"type": "order", **data}),))
