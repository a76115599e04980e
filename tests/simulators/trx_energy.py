"""A TRON energy-rental platform, simulated (seed 004): rental orders and TRX deposits, pushed
to hookledger as the platform's notifications, and answered through its order query.

Truth: ``count`` rental orders, each created (``status`` 0) and then delegated (1) or failed
(-1), and ``deposits`` TRX deposits to the account's deposit address, amounts in sun
(1 TRX = 1,000,000 sun), some not whole TRX.

Notifications go to ``POST {hook-url}/hooks/{source}/{token}`` (hookledger's ``token`` source
auth; the platform cannot sign), the token from ``SIM_TOKEN``, JSON bodies ``type: order`` and
``type: deposit`` as seed 004 shows them; a failed push is retried up to 3 times.

Query API: ``GET /orders/{id}`` with header ``x-api-key`` (``SIM_API_KEY``). Seed 004's
convention: success is the order as JSON; an error is the text ``ERROR: reason`` with HTTP 200
(``ERROR: unauthorized``, ``ERROR: validation failed``, ``ERROR: order not found``). Injected
faults answer 429 ``ERROR: too many requests`` or the configured status with
``ERROR: internal error``. An order shows the status it has reached in the simulation so far.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
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

RETRY_DELAYS_S = (0.5, 1.0, 2.0)  # seed 004: a failed push is retried up to 3 times
ORDER_ID_BASE = 1000
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def address(rng: random.Random) -> str:
    """A TRON address: ``T`` and 33 base58 characters."""
    return "T" + "".join(rng.choice(_BASE58) for _ in range(33))


def make_truth(
    seed: int, count: int, deposits: int, start_ms: int, order_time_s: int
) -> dict[str, Any]:
    """The rental orders and deposits of simulation ``seed``. Rental ``i`` and deposit ``j``
    depend only on ``seed`` and their index."""
    deposit_address = address(random.Random(f"trx:{seed}:address"))
    return {
        "kind": "trx-energy",
        "seed": seed,
        "start_ms": start_ms,
        "deposit_address": deposit_address,
        "rentals": [_rental(seed, i, start_ms, order_time_s) for i in range(count)],
        "deposits": [_deposit(seed, j, start_ms, deposit_address) for j in range(deposits)],
    }


def _rental(seed: int, i: int, start_ms: int, order_time_s: int) -> dict[str, Any]:
    rng = random.Random(f"trx:{seed}:rental:{i}")
    created = start_ms + i * 11
    final = rng.choices((1, -1), (80, 20))[0]
    return {
        "id": ORDER_ID_BASE + i,
        "orderTime": order_time_s,
        "orderType": 0,
        "receiverAddress": address(rng),
        "resourceType": rng.choice((0, 1)),
        "source": rng.choice(("WEB", "API")),
        "timeStamp": created,
        "times": rng.randint(1, 10),
        "statuses": [0, final],
        "at": [created, created + rng.randint(50, 1500)],
    }


def _deposit(seed: int, j: int, start_ms: int, deposit_address: str) -> dict[str, Any]:
    rng = random.Random(f"trx:{seed}:deposit:{j}")
    at = start_ms + j * 13 + rng.randint(0, 500)
    whole = rng.random() < 0.5
    amount = rng.randint(1, 5000) * 1_000_000 if whole else rng.randint(1, 5_000_000_000)
    return {
        "id": j + 1,
        "address": deposit_address,
        "fromAddress": address(rng),
        "amount": amount,
        "txHash": rng.randbytes(32).hex(),
        "createdAt": datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "at": at,
    }


def order_view(rental: dict[str, Any], status: int) -> dict[str, Any]:
    """The order as the query API answers it (seed 004's ``GET /orders/{id}``)."""
    return {
        "id": rental["id"],
        "orderTime": rental["orderTime"],
        "orderType": rental["orderType"],
        "receiverAddress": rental["receiverAddress"],
        "resourceType": rental["resourceType"],
        "source": rental["source"],
        "status": status,
        "timeStamp": rental["timeStamp"],
        "times": rental["times"],
    }


def deposit_body(deposit: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "deposit",
        **{k: deposit[k] for k in ("id", "address", "fromAddress", "amount", "txHash")},
        "createdAt": deposit["createdAt"],
    }


class TrxEnergy(Counterpart):
    name = "trx-energy"

    def __init__(
        self,
        truth: dict[str, Any],
        *,
        hook_url: str,
        source: str,
        token: str,
        api_key: str,
        behaviour: Behaviour,
        faults: Faults,
    ) -> None:
        self.truth = truth
        self.rentals = {str(r["id"]): r for r in truth["rentals"]}
        self._url = f"{hook_url.rstrip('/')}/hooks/{source}/{token}"
        self._api_key = api_key.encode()
        self.behaviour = behaviour
        self.faults = faults
        self.api_counts: Counter[str] = Counter()
        self._by_rental: dict[str, list[Callback]] = {}

    def truth_json(self) -> dict[str, Any]:
        return self.truth

    def callbacks(self) -> list[Callback]:
        timed: list[tuple[int, int, Callback]] = []
        for rental in self.truth["rentals"]:
            own = self._by_rental.setdefault(str(rental["id"]), [])
            for n, (status, at) in enumerate(zip(rental["statuses"], rental["at"], strict=True)):
                cb = Callback(
                    ident=f"order:{rental['id']}",
                    step=n,
                    key=f"order:{rental['id']}:{status}",
                    body={"type": "order", **order_view(rental, status)},
                    recoverable=True,
                )
                own.append(cb)
                timed.append((at, len(timed), cb))
        for deposit in self.truth["deposits"]:
            cb = Callback(
                ident=f"deposit:{deposit['txHash']}",
                step=0,
                key=f"deposit:{deposit['txHash']}",
                body=deposit_body(deposit),
                recoverable=False,  # seed 004 has no deposit query: a lost one stays lost
            )
            timed.append((deposit["at"], len(timed), cb))
        timed.sort(key=lambda t: t[:2])
        return [t[2] for t in timed]

    def mangle(self, body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        changed = dict(body)
        how = rng.randrange(3)
        if how == 0:  # the status as a word
            changed["status"] = {0: "CREATED", 1: "DELEGATED", -1: "FAILED"}[body["status"]]
        elif how == 1:  # the receiver under a new name
            changed["receiver_address"] = changed.pop("receiverAddress")
        else:  # the resource type as a word
            changed["resourceType"] = "ENERGY" if body["resourceType"] == 1 else "BANDWIDTH"
        return changed

    async def post(self, client: httpx.AsyncClient, body: bytes) -> httpx.Response:
        return await client.post(
            self._url, content=body, headers={"content-type": "application/json"}
        )

    async def order(self, request: Request) -> Response:
        fault = self.faults.next_fault()
        if fault == "rate_limited":
            self.api_counts["rate_limited"] += 1
            return PlainTextResponse("ERROR: too many requests", 429)
        if fault == "error":
            self.api_counts["errors"] += 1
            return PlainTextResponse("ERROR: internal error", self.faults.error_status)
        given = request.headers.get("x-api-key", "").encode()
        if not hmac.compare_digest(
            hashlib.sha256(given).digest(), hashlib.sha256(self._api_key).digest()
        ):
            self.api_counts["unauthorized"] += 1
            return PlainTextResponse("ERROR: unauthorized")
        ident = request.path_params["order_id"]
        if not ident.isdigit():
            self.api_counts["validation_failed"] += 1
            return PlainTextResponse("ERROR: validation failed")
        rental = self.rentals.get(str(int(ident)))
        played = [cb.step for cb in self._by_rental.get(str(int(ident)), ()) if cb.played]
        if rental is None or not played:
            self.api_counts["not_found"] += 1
            return PlainTextResponse("ERROR: order not found")
        self.api_counts["order"] += 1
        return JSONResponse(order_view(rental, rental["statuses"][max(played)]))

    def routes(self) -> list[BaseRoute]:
        return [Route("/orders/{order_id}", self.order)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.simulators.trx_energy", description=__doc__
    )
    common_arguments(parser)
    parser.add_argument("--deposits", type=int, default=100, help="how many TRX deposits")
    parser.add_argument(
        "--order-time", type=int, default=3600, help="each rental's orderTime, in seconds"
    )
    args = parser.parse_args(argv)
    truth = make_truth(args.seed, args.count, args.deposits, start_ms_of(args), args.order_time)
    trx = TrxEnergy(
        truth,
        hook_url=args.hook_url,
        source=args.source,
        token=secret_from_env("SIM_TOKEN"),
        api_key=secret_from_env("SIM_API_KEY"),
        behaviour=behaviour_from(args, RETRY_DELAYS_S),
        faults=faults_from(args),
    )
    serve(build_app(trx, args.seed, autostart=args.autostart), args.host, args.port)


if __name__ == "__main__":
    main()
