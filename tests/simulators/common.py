"""What both simulators share: the delivery plan (drops, duplicates, reordering, mangling),
the paced sender with the counterpart's retries, injected faults for the query API, the
control API and the command line.

A simulator is a ``Counterpart``: it lists its callbacks in the order its truth happened
(``Callback``), knows how to post one (URL and signing), and adds its query API's routes. This
module turns that into a running server.

Fates are decided from the seed alone, so two runs with the same arguments drop, duplicate,
reorder and mangle the same callbacks. A thing (an order, a rental order) never loses every one
of its callbacks: hookledger can only find a gap in something it has heard of, so when every
callback of a thing drew "drop" or "mangle", its first one is sent intact anyway. Callbacks of
things that are never announced again and that the counterpart cannot be asked about (TRX
deposits: seed 004 has no deposit query) are never dropped or mangled, since nothing could
ever recover them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route


@dataclass
class Callback:
    """One callback the counterpart owes: ``ident`` names its thing, ``step`` its place in
    that thing's life, ``key`` the idempotency key hookledger gives it."""

    ident: str
    step: int
    key: str
    body: dict[str, Any]
    recoverable: bool  # the counterpart can be asked about it later (a query API)
    mangled: dict[str, Any] | None = None  # the body in a format hookledger refuses
    fate: str = "sent"  # sent | dropped | mangled
    duplicated: bool = False
    played: bool = False  # its moment has come (sent or dropped): the query API shows it
    attempts: int = 0
    answers: list[int] = field(default_factory=list)  # HTTP statuses, one per attempt
    outcome: str | None = None  # hookledger's "status" on a 2xx, else "failed"

    def summary(self) -> dict[str, Any]:
        return {
            "ident": self.ident,
            "step": self.step,
            "key": self.key,
            "fate": self.fate,
            "duplicated": self.duplicated,
            "attempts": self.attempts,
            "answers": self.answers,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class Behaviour:
    """How the counterpart delivers: fractions are per callback, ``rate`` is callbacks per
    second over all connections, ``retry_delays_s`` the waits between tries."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    mangle: float = 0.0
    rate: float = 200.0
    concurrency: int = 8
    retry_delays_s: tuple[float, ...] = (0.2, 0.5, 1.0)
    timeout_s: float = 10.0


@dataclass
class Faults:
    """Answers the query API gives instead of the truth: the first ``rate_limit_first`` calls
    and every ``rate_limit_every``-th call are rate limited (429); every ``error_every``-th
    call is an error with HTTP status ``error_status``."""

    rate_limit_first: int = 0
    rate_limit_every: int = 0
    error_every: int = 0
    error_status: int = 500
    calls: int = 0

    def next_fault(self) -> str | None:
        """Count one call; return ``"rate_limited"``, ``"error"`` or ``None``."""
        self.calls += 1
        n = self.calls
        if n <= self.rate_limit_first or (self.rate_limit_every and n % self.rate_limit_every == 0):
            return "rate_limited"
        if self.error_every and n % self.error_every == 0:
            return "error"
        return None


class Counterpart:
    """What a simulator supplies: its truth, its callbacks and its query API."""

    name = "counterpart"
    behaviour: Behaviour
    faults: Faults
    api_counts: Counter[str]

    def truth_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def callbacks(self) -> list[Callback]:
        """Every callback the truth makes, each thing's in the order they happened, things
        interleaved as their lives overlap."""
        raise NotImplementedError

    def mangle(self, body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """``body`` in a format hookledger's schema refuses (the counterpart changed a field)."""
        raise NotImplementedError

    async def post(self, client: httpx.AsyncClient, body: bytes) -> httpx.Response:
        """Post one callback body to hookledger, signed as the counterpart signs."""
        raise NotImplementedError

    def routes(self) -> list[BaseRoute]:
        """The query API's routes."""
        raise NotImplementedError


def plan(counterpart: Counterpart, seed: int) -> list[Callback]:
    """The delivery order with every callback's fate decided: the truth's order with some
    callbacks moved later (reordered), some posted twice (duplicated), some never posted
    (dropped) and some posted in a refused format (mangled)."""
    behaviour = counterpart.behaviour
    rng = random.Random(seed * 7919 + 17)
    callbacks = counterpart.callbacks()
    things: dict[str, list[Callback]] = {}
    for cb in callbacks:
        things.setdefault(cb.ident, []).append(cb)
        if not cb.recoverable:
            continue
        draw = rng.random()
        if draw < behaviour.drop:
            cb.fate = "dropped"
        elif draw < behaviour.drop + behaviour.mangle:
            cb.fate = "mangled"
            cb.mangled = counterpart.mangle(cb.body, rng)
    for own in things.values():
        if all(cb.fate != "sent" for cb in own):
            own[0].fate, own[0].mangled = "sent", None
    order: list[Callback] = list(callbacks)
    # Reordering: a callback swaps places with one up to 20 places later, so a thing's later
    # state can arrive before its earlier one.
    for i in range(len(order)):
        if rng.random() < behaviour.reorder:
            j = min(len(order) - 1, i + rng.randint(1, 20))
            order[i], order[j] = order[j], order[i]
    deliveries: list[Callback] = []
    for cb in order:
        deliveries.append(cb)
        if cb.fate == "sent" and rng.random() < behaviour.duplicate:
            cb.duplicated = True
            deliveries.insert(rng.randint(len(deliveries) // 2, len(deliveries)), cb)
    return deliveries


class Sender:
    """Plays a plan: paced, a few connections at once, each failed try retried after the
    behaviour's delays (a non-2xx answer or no answer is a failed try)."""

    def __init__(self, counterpart: Counterpart, deliveries: list[Callback]) -> None:
        self.counterpart = counterpart
        self.deliveries = deliveries
        self.state = "idle"
        self.counts: Counter[str] = Counter()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> bool:
        if self._task is not None:
            return False
        self.state, self.started_at = "sending", time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def _run(self) -> None:
        behaviour = self.counterpart.behaviour
        gate = asyncio.Semaphore(behaviour.concurrency)
        limits = httpx.Limits(max_connections=behaviour.concurrency)
        async with httpx.AsyncClient(timeout=behaviour.timeout_s, limits=limits) as client:
            tasks: list[asyncio.Task[None]] = []
            interval = 1.0 / behaviour.rate
            next_at = time.monotonic()
            for cb in self.deliveries:
                cb.played = True
                if cb.fate == "dropped":
                    self.counts["dropped"] += 1
                    continue
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                await gate.acquire()
                tasks.append(asyncio.create_task(self._deliver_then_release(client, cb, gate)))
            await asyncio.gather(*tasks)
        self.state, self.finished_at = "done", time.monotonic()

    async def _deliver_then_release(
        self, client: httpx.AsyncClient, cb: Callback, gate: asyncio.Semaphore
    ) -> None:
        try:
            await self.deliver(client, cb)
        finally:
            gate.release()

    async def deliver(self, client: httpx.AsyncClient, cb: Callback) -> None:
        """Post ``cb`` (its mangled body if it is mangled) until a 2xx or out of retries."""
        body = orjson.dumps(cb.mangled if cb.fate == "mangled" else cb.body)
        self.counts["mangled_posts" if cb.fate == "mangled" else "posts"] += 1
        delays = self.counterpart.behaviour.retry_delays_s
        for attempt in range(len(delays) + 1):
            if attempt:
                self.counts["retries"] += 1
                await asyncio.sleep(delays[attempt - 1])
            cb.attempts += 1
            self.counts["attempts"] += 1
            try:
                answer = await self.counterpart.post(client, body)
            except httpx.HTTPError:
                cb.answers.append(0)
                self.counts["transport_errors"] += 1
                continue
            cb.answers.append(answer.status_code)
            self.counts[f"http_{answer.status_code}"] += 1
            if 200 <= answer.status_code < 300:
                outcome = _status_of(answer)
                cb.outcome = outcome
                self.counts[outcome] += 1
                return
        cb.outcome = "failed"
        self.counts["failed"] += 1

    def status(self) -> dict[str, Any]:
        fates = Counter(cb.fate for cb in {id(cb): cb for cb in self.deliveries}.values())
        elapsed = None
        if self.started_at is not None:
            elapsed = (self.finished_at or time.monotonic()) - self.started_at
        return {
            "state": self.state,
            "planned": len({id(cb) for cb in self.deliveries}),
            "deliveries": len(self.deliveries),
            "dropped": fates["dropped"],
            "mangled": fates["mangled"],
            "duplicated": sum(cb.duplicated for cb in {id(c): c for c in self.deliveries}.values()),
            "elapsed_s": elapsed,
            "counts": dict(self.counts),
        }


def _status_of(answer: httpx.Response) -> str:
    try:
        data = answer.json()
    except ValueError:
        return "unreadable"
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else "unreadable"


def build_app(counterpart: Counterpart, seed: int, *, autostart: bool = False) -> Starlette:
    """The simulator's server: the counterpart's query API and the control API."""
    deliveries = plan(counterpart, seed)
    sender = Sender(counterpart, deliveries)
    unique = list({id(cb): cb for cb in deliveries}.values())

    async def start(_request: Request) -> Response:
        started = sender.start()
        return JSONResponse({"started": started, "state": sender.state})

    async def status(_request: Request) -> Response:
        return JSONResponse(
            {
                "name": counterpart.name,
                **sender.status(),
                "api": {"calls": counterpart.faults.calls, **counterpart.api_counts},
            }
        )

    async def truth(_request: Request) -> Response:
        return Response(orjson.dumps(counterpart.truth_json()), media_type="application/json")

    async def plan_view(_request: Request) -> Response:
        return Response(
            orjson.dumps([cb.summary() for cb in unique]), media_type="application/json"
        )

    async def late(request: Request) -> Response:
        """Send up to ``count`` dropped callbacks now (``keys`` picks which), each with the
        counterpart's retries; answer what hookledger said to each."""
        wanted = orjson.loads(await request.body() or b"{}")
        keys = set(wanted.get("keys") or ())
        chosen = [cb for cb in unique if cb.fate == "dropped" and (not keys or cb.key in keys)]
        chosen = chosen[: int(wanted.get("count", len(chosen)))]
        results = []
        async with httpx.AsyncClient(timeout=counterpart.behaviour.timeout_s) as client:
            for cb in chosen:
                late_cb = Callback(cb.ident, cb.step, cb.key, cb.body, recoverable=True)
                await sender.deliver(client, late_cb)
                sender.counts["late"] += 1
                results.append(late_cb.summary())
        return Response(orjson.dumps(results), media_type="application/json")

    async def faults(request: Request) -> Response:
        wanted = orjson.loads(await request.body() or b"{}")
        for name in ("rate_limit_first", "rate_limit_every", "error_every", "error_status"):
            if name in wanted:
                setattr(counterpart.faults, name, int(wanted[name]))
        if wanted.get("reset_calls"):
            counterpart.faults.calls = 0
        return JSONResponse(
            {
                "rate_limit_first": counterpart.faults.rate_limit_first,
                "rate_limit_every": counterpart.faults.rate_limit_every,
                "error_every": counterpart.faults.error_every,
                "error_status": counterpart.faults.error_status,
            }
        )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if autostart:
            sender.start()
        yield

    routes: list[BaseRoute] = [
        Route("/control/start", start, methods=["POST"]),
        Route("/control/status", status),
        Route("/control/truth", truth),
        Route("/control/plan", plan_view),
        Route("/control/late", late, methods=["POST"]),
        Route("/control/faults", faults, methods=["POST"]),
        *counterpart.routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both simulators take (secrets come from the environment, never argv)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, required=True)
    add("--hook-url", required=True, help="hookledger's base URL, e.g. http://127.0.0.1:8000")
    add("--source", required=True, help="the hookledger source name callbacks go to")
    add("--seed", type=int, default=1)
    add("--count", type=int, default=100, help="how many things (orders) the truth holds")
    add("--start-ms", type=int, default=None, help="the truth's clock start (default: now)")
    add("--drop", type=float, default=0.0)
    add("--duplicate", type=float, default=0.0)
    add("--reorder", type=float, default=0.0)
    add("--mangle", type=float, default=0.0)
    add("--rate", type=float, default=200.0, help="callbacks per second")
    add("--concurrency", type=int, default=8)
    add("--retry-scale", type=float, default=1.0, help="multiplies the retry delays")
    add("--rate-limit-first", type=int, default=0)
    add("--rate-limit-every", type=int, default=0)
    add("--error-every", type=int, default=0)
    add("--error-status", type=int, default=500)
    add("--autostart", action="store_true", help="start sending once the server is up")


def behaviour_from(args: argparse.Namespace, retry_delays_s: Sequence[float]) -> Behaviour:
    return Behaviour(
        drop=args.drop,
        duplicate=args.duplicate,
        reorder=args.reorder,
        mangle=args.mangle,
        rate=args.rate,
        concurrency=args.concurrency,
        retry_delays_s=tuple(d * args.retry_scale for d in retry_delays_s),
    )


def faults_from(args: argparse.Namespace) -> Faults:
    return Faults(
        rate_limit_first=args.rate_limit_first,
        rate_limit_every=args.rate_limit_every,
        error_every=args.error_every,
        error_status=args.error_status,
    )


def secret_from_env(name: str) -> str:
    """A secret the simulator needs, from the environment (so no process listing shows it)."""
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def start_ms_of(args: argparse.Namespace) -> int:
    return args.start_ms if args.start_ms is not None else int(time.time() * 1000)


def serve(app: Starlette, host: str, port: int) -> None:
    """Serve ``app``; no access log: query strings carry signatures and access keys."""
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
