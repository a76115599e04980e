"""What every kind's pull client shares: one GET, its transport failures and HTTP statuses
turned into ``PullFailed`` (or ``None`` for "the counterpart does not know it").

The ``client`` is the caller's ``httpx.AsyncClient`` (behind the outbound guard, with the
source's timeout); nothing here logs, and messages name the path asked, never a header.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from app.kinds.base import PullFailed

_EXCERPT = 200


async def get(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    what: str,
) -> httpx.Response | None:
    """GET ``url``; return the response (2xx, or any other status the caller reads), or None
    on 404. Raises ``PullFailed``: ``timeout``, ``rate_limited`` (429), ``server_error``
    (5xx), ``error`` (anything else the transport refused)."""
    try:
        response = await client.get(url, headers=headers, params=params)
    except httpx.TimeoutException as exc:
        raise PullFailed(
            f"{what}: no answer in time ({type(exc).__name__})", outcome="timeout"
        ) from exc
    except httpx.HTTPError as exc:
        raise PullFailed(f"{what}: {type(exc).__name__}: {exc}"[:300], outcome="error") from exc
    status = response.status_code
    if status == 404:
        return None
    if status == 429:
        wait = response.headers.get("retry-after", "")[:16]
        hint = f" (Retry-After {wait})" if wait else ""
        raise PullFailed(f"{what}: HTTP 429, rate limited{hint}", outcome="rate_limited")
    if status >= 500:
        raise PullFailed(f"{what}: HTTP {status}: {excerpt(response)}", outcome="server_error")
    return response


def excerpt(response: httpx.Response) -> str:
    """The start of an answer's text, on one line, for an error message."""
    return " ".join(response.text[:_EXCERPT].split())
