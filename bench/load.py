"""An open-loop HTTP load generator on raw asyncio streams.

Requests are sent at a fixed rate over keep-alive connections; each request's latency counts
from the moment it was *due* (not when a connection was free), so a stalled server cannot hide
its queueing (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from bench.common import SECRET


def htx_body(order_id: int) -> bytes:
    """A signed-able HTX fill of one whole order."""
    return orjson.dumps(
        {
            "order-id": order_id,
            "account-id": 1001,
            "symbol": "btcusdt",
            "type": "buy-limit",
            "amount": "0.03",
            "price": "42000.5",
            "filled-amount": "0.03",
            "filled-cash-amount": "1260.015",
            "filled-fees": "0.00006",
            "state": "filled",
        }
    )


def htx_bodies(start: int = 20_000_000) -> Iterator[bytes]:
    """Unique HTX fills, one order each."""
    return (htx_body(n) for n in itertools.count(start))


def signature(body: bytes) -> str:
    """The ``X-Signature`` of ``body`` for the bench sources."""
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"X-Signature: {signature(body)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Sent:
    due: float
    done: float
    status: int
    event_id: str | None


@dataclass
class LoadResult:
    sent: list[Sent] = field(default_factory=list)
    late: int = 0  # requests that found no free connection at their due time


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def run_load(
    host: str,
    port: int,
    path: str,
    bodies: Iterator[bytes],
    *,
    rate: float,
    count: int,
    connections: int = 32,
    accepted: list[tuple[str, float]] | None = None,
) -> LoadResult:
    """Send ``count`` requests at ``rate`` per second; ``accepted`` gets (event id, due time)
    of each 200 ``accepted`` as it arrives."""
    result = LoadResult()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                due, payload = item
                writer.write(payload)
                status, body = await _read_response(reader)
                done = time.monotonic()
                event_id = None
                if status == 200:
                    answer = orjson.loads(body)
                    event_id = answer.get("event_id")
                    if accepted is not None and answer.get("status") == "accepted":
                        accepted.append((event_id, due))
                result.sent.append(Sent(due, done, status, event_id))
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start = time.monotonic()
    for n in range(count):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if queue.qsize() > 0:
            result.late += 1
        queue.put_nowait((due, request_bytes(path, next(bodies))))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return result
