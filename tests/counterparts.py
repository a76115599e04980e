"""Counterparts as small real servers on loopback: a 4pass webhook API (seed 000) and a
Standard Webhooks receiver that verifies with the reference library."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.canary import remember_signature
from tests.processes import free_port
from tests.support import FOURPASS_SECRET, FOURPASS_TOKEN

ACTIONS = ("long_entry", "long_exit", "short_entry", "short_exit")


@dataclass
class FourPass:
    """Seed 000's API: /webhook/{token}/order, replay protection (409 for a payload seen within
    5 minutes), a daily limit (429), live mode needing timestamp and secret (400/401)."""

    token: str = FOURPASS_TOKEN
    secret: str = FOURPASS_SECRET
    daily_limit: int = 100
    forced: deque[int] = field(default_factory=deque)  # statuses to answer next, in order
    delay_s: float = 0.0  # answer this late (after recording the order)
    on_order: Callable[[], None] | None = None  # called once an order is in, before answering
    orders: list[dict[str, Any]] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    _seen: dict[bytes, float] = field(default_factory=dict)

    async def order(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(body)
        if request.path_params["token"] != self.token:
            return JSONResponse({"detail": "invalid token"}, 404)
        if self.forced:
            return JSONResponse({"detail": "forced"}, self.forced.popleft())
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return JSONResponse({"detail": "bad json"}, 422)
        errors = []
        if data.get("action") not in ACTIONS:
            errors.append(
                {
                    "type": "literal_error",
                    "loc": ["body", "action"],
                    "msg": "bad action",
                    "input": data.get("action"),
                }
            )
        if not isinstance(data.get("quantity"), int) or data["quantity"] <= 0:
            errors.append(
                {
                    "type": "int",
                    "loc": ["body", "quantity"],
                    "msg": "bad quantity",
                    "input": data.get("quantity"),
                }
            )
        if not isinstance(data.get("symbol"), str):
            errors.append(
                {
                    "type": "string",
                    "loc": ["body", "symbol"],
                    "msg": "bad symbol",
                    "input": data.get("symbol"),
                }
            )
        if errors:
            return JSONResponse({"detail": errors}, 422)
        live = request.query_params.get("simulation", "true") == "false"
        if live and (not data.get("timestamp") or not data.get("secret")):
            return JSONResponse({"detail": "live trading needs timestamp and secret"}, 400)
        if data.get("secret") is not None and data["secret"] != self.secret:
            return JSONResponse({"detail": "secret mismatch"}, 401)
        if data.get("timestamp"):
            stamp = datetime.strptime(data["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            if abs((datetime.now(UTC) - stamp).total_seconds()) > 300:
                return JSONResponse({"detail": "timestamp expired"}, 401)
        now = time.time()
        if now - self._seen.get(body, -1e9) < 300:
            return JSONResponse({"detail": "duplicate request"}, 409)
        self._seen[body] = now
        if len(self.orders) >= self.daily_limit:
            return JSONResponse({"detail": "daily limit"}, 429)
        self.orders.append(data)
        if self.on_order is not None:
            self.on_order()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow exchange: the order is in, the answer late
        return JSONResponse(
            {
                "status": "submitted",
                "order_id": len(self.orders),
                "user_email": "use***@example.com",
                "message": "ok",
            }
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhook/{token}/order", self.order, methods=["POST"])])


@dataclass
class Receiver:
    """A Standard Webhooks receiver: verifies each delivery with the reference library."""

    secret: str
    forced: deque[int] = field(default_factory=deque)
    verified: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        remember_signature(request.headers.get("webhook-signature", ""))  # never to be logged
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.rejected += 1
            return Response(status_code=400)
        self.verified.append({"id": request.headers["webhook-id"], "payload": payload})
        if self.forced:
            return Response(status_code=self.forced.popleft())
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])


class Served:
    """Run an ASGI app with uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
