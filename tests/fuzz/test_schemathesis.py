"""Schemathesis against the real app (real Redis; SQLite and PostgreSQL), driven by the shipped
OpenAPI document as the app serves it at ``/openapi.json``.

Every operation gets positive and negative cases, as an outsider sends them (generated, mostly
wrong, credentials) and in variants that get past authentication so the cases reach the parsers
and the handlers: the ``open`` source (auth ``none``, loopback allowed), the token source with
its token, the HMAC and Standard Webhooks sources with bodies signed over the exact bytes sent,
signed accountants' API calls, admin calls with the bearer token, and real event and order ids.
(``GET /openapi.json`` itself, the document's own location, schemathesis leaves out; the
document tests in test_openapi.py cover it.)

Every answer must be no 5xx, a documented status with a JSON body that conforms to the
documented schema, and a schema-violating request must never be accepted. At least
``MIN_CASES`` cases run per database, each variant with a fixed seed. Here the cases are the
same from run to run (alone, after other tests, with ``-n 2``, with ``CI=true``), yet one
fresh-clone CI run generated others and, at 160 cases, never reached the token endpoint's 422;
why is not known. Its budget is 300 now (16 of them get a 422 here).
"""

from __future__ import annotations

import base64
import collections
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.domain.apikeys import sign as api_sign
from app.domain.signing import hmac_sha256_hex, sign_standard_webhook
from app.main import create_app
from app.settings import load_settings
from tests.support import (
    API_SECRETS,
    HTX_SECRET,
    PP_SECRET,
    TRX_TOKEN,
    body_of,
    fixture_json,
    htx_update,
    pp_headers,
    run_jobs,
)

ADMIN_TOKEN = "fuzz-admin-token-0123456789"
MIN_CASES = 1000
# Cases per operation, shared by its variants; the inbound endpoints get the most.
BUDGET = {
    "/hooks/{source}": 380,
    "/hooks/{source}/{token}": 300,
    "/admin/events/{event_id}": 80,
    "/admin/events/{event_id}/replay": 80,
    "/admin/events/{event_id}/discard": 80,
}
DEFAULT_BUDGET = 55
BASE_URL = f"http://{asgi.HOST}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
POS, NEG = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
ACCOUNT_PATHS = [
    "/account/v1/transactions",
    "/account/v1/balances",
    "/account/v1/orders",
    "/account/v1/orders/{source}/{order_id}",
    "/account/v1/contracts",
    "/account/v1/deposits",
]
# What the run must reach, or it proves little: every parser path of the inbound endpoints, and
# a 200 from every read and action behind authentication.
MUST_REACH = {
    *(("POST /hooks/{source}", s) for s in (200, 400, 401, 403, 404, 415, 422)),
    *(("POST /hooks/{source}/{token}", s) for s in (200, 400, 401, 404, 422)),
    *((f"GET {path}", s) for path in ACCOUNT_PATHS for s in (200, 401)),
    *((f"GET {path}", s) for path in ACCOUNT_PATHS if "{" not in path for s in (400, 403)),
    ("GET /account/v1/orders/{source}/{order_id}", 404),
    ("GET /admin/events", 200),
    ("GET /admin/events/{event_id}", 200),
    ("POST /admin/events/{event_id}/replay", 200),
    ("POST /admin/events/{event_id}/discard", 200),
    ("POST /admin/events/{event_id}/discard", 409),
    ("POST /admin/dead-letters/replay", 200),
    ("GET /healthz", 200),
    ("GET /readyz", 200),
}

Sender = Callable[[Case], dict[str, Any]]
Seen = collections.Counter[tuple[str, str, int]]


def _loopback(app: Any) -> Any:
    """The app as a loopback client reaches it (schemathesis' in-process client has no
    address): the same peer the ``client`` fixture's TestClient claims."""

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": ("127.0.0.1", 50000)}
        await app(scope, receive, send)

    return asgi_app


# ---------------------------------------------------------------- senders


def _prepared(case: Case) -> requests.PreparedRequest:
    """The request exactly as the in-process client will send it: URL and body bytes."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    return requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=dict(kwargs["headers"]),
        params=kwargs.get("params"),
        data=kwargs.get("data") or None,
        json=kwargs.get("json"),
    ).prepare()


def _body(case: Case) -> bytes:
    body = _prepared(case).body
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else body


def plain(_case: Case) -> dict[str, Any]:
    return {}


def htx_signed(case: Case) -> dict[str, Any]:
    body = _body(case)
    return {"data": body, "headers": {"X-Signature": hmac_sha256_hex(HTX_SECRET.encode(), body)}}


def htx_signed_with_timestamp(case: Case) -> dict[str, Any]:
    body, stamp = _body(case), str(int(time.time()))
    signature = hmac_sha256_hex(HTX_SECRET.encode(), stamp.encode() + b"." + body)
    return {"data": body, "headers": {"X-Signature": signature, "X-Timestamp": stamp}}


def standard_webhooks_signed(case: Case) -> dict[str, Any]:
    body, stamp = _body(case), int(time.time())
    key = base64.b64decode(PP_SECRET.removeprefix("whsec_"))
    msg_id = f"msg_{case.id}"
    return {
        "data": body,
        "headers": {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard_webhook(key, msg_id, stamp, body),
        },
    }


def api_signed(key: str) -> Sender:
    """Sign for ``key`` over the path and query exactly as they will be sent."""

    def send(case: Case) -> dict[str, Any]:
        url = urlsplit(_prepared(case).url or "")
        stamp = str(int(time.time() * 1000))
        signature = api_sign(API_SECRETS[key], stamp, case.method, url.path, url.query)
        return {
            "headers": {"X-API-Key": key, "X-API-Timestamp": stamp, "X-API-Signature": signature}
        }

    return send


def admin_authorized(_case: Case) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}


# ---------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One way to fuzz an operation: a generation mode, fixed path parameters, a sender."""

    name: str
    mode: GenerationMode
    send: Sender = plain
    path: dict[str, str] = field(default_factory=dict)
    signed_in: bool = False  # the sender adds real credentials


@dataclass(frozen=True)
class Seeded:
    """Real rows the fuzzer aims at: processed events, one still to process, an order."""

    event_ids: list[str]
    order_id: str


def _both(
    name: str, send: Sender = plain, *, signed_in: bool = False, **path: str
) -> list[Variant]:
    return [
        Variant(f"{name}+", POS, send, path, signed_in),
        Variant(f"{name}-", NEG, send, path, signed_in),
    ]


def variants(path: str, seeded: Seeded) -> list[Variant]:
    """Generated cases as an outsider sends them, plus ones that get past authentication."""
    found = _both("generated")
    if path == "/hooks/{source}":
        found += _both("open", source="open")
        found += _both("htx-hmac", htx_signed, source="htx-main")
        found += _both("htx-hmac-ts", htx_signed_with_timestamp, source="htx-ts")
        found += _both("pp-webhooks", standard_webhooks_signed, source="pp")
        found += _both("trx-unsigned", source="trx")
        found += _both("restricted", htx_signed, source="restricted")
    elif path == "/hooks/{source}/{token}":
        found += _both("trx-token", source="trx", token=TRX_TOKEN)
        found += _both("trx-wrong-token", source="trx")
        found += _both("open-with-token", source="open")
    elif path.startswith("/account/v1/"):
        found += _both("auditor", api_signed("ak_auditor"), signed_in=True)
        found += _both("finance", api_signed("ak_finance"), signed_in=True)
        if "{order_id}" in path:
            found += _both(
                "order",
                api_signed("ak_auditor"),
                signed_in=True,
                source="open",
                order_id=seeded.order_id,
            )
    elif path.startswith("/admin/"):
        found += _both("admin", admin_authorized, signed_in=True)
        if "{event_id}" in path:
            # Real events, a signal that does not exist, and one past the INTEGER id column.
            aimed = [*seeded.event_ids, "sig_1", f"sig_{2**31}", "evt_" + "f" * 40]
            for n, event_id in enumerate(aimed):
                found += _both(f"event{n}", admin_authorized, signed_in=True, event_id=event_id)
    return found


def _negatable(operation: Any, variant: Variant) -> bool:
    """True when ``operation`` has an input a negative case can break: a path segment is any
    non-empty text, so only a query, a body or generated credentials can be made invalid."""
    security = not variant.signed_in and any(operation.security.iter_parameters())
    return bool(operation.query or operation.body or security)


def _budget(path: str, variants_: int) -> int:
    return max(5, BUDGET.get(path, DEFAULT_BUDGET) // variants_)


# ---------------------------------------------------------------- the run


def _seed(app: Any, runtime: Any) -> Seeded:
    """Deliver and process one event of each kind (reads have rows to return), then deliver
    one more that stays unprocessed (a discard can succeed)."""
    order = htx_update(424242, "filled", "0.5", "21000", "0.0005") | {"account-id": 1001}
    settle = body_of(fixture_json("pingpong_position_settle.json"))
    waiting = body_of(htx_update(434343, "submitted", "0", "0", "0"))
    json_type = {"content-type": "application/json"}
    with asgi.get_client(app) as client:
        answers = [
            client.post("/hooks/open", data=body_of(order), headers=json_type),
            client.post(
                f"/hooks/trx/{TRX_TOKEN}",
                data=body_of(fixture_json("trx_deposit.json")),
                headers=json_type,
            ),
            client.post("/hooks/pp", data=settle, headers=pp_headers(settle, msg_id="seed")),
        ]
        run_jobs(runtime)
        answers.append(client.post("/hooks/open", data=waiting, headers=json_type))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    return Seeded(event_ids=[a.json()["event_id"] for a in answers], order_id="424242")


def _fuzz(operation: Any, variant: Variant, examples: int, seen: Seen) -> None:
    """Send ``examples`` cases of ``variant`` to ``operation`` and check every answer."""
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @seed(zlib.crc32(f"{label} {variant.name}".encode()))
    @given(case=operation.as_strategy(variant.mode, path_parameters=variant.path or None))
    def fuzz(case: Case) -> None:
        response = case.call(**variant.send(case))
        seen[(label, variant.name, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    try:
        fuzz()
    except Exception as exc:
        exc.add_note(f"operation {label}, variant {variant.name}")
        raise


@pytest.fixture
def fuzz_app(env: dict[str, str], runtime: Any) -> Iterator[Any]:
    """The real app, with an admin token; schemathesis runs its lifespan (in its own event
    loop thread), so it is shut down here. Its negative cases send wrong tokens by the
    hundred from one address: the wrong-token limit (tested on its own in
    tests/security/test_auth_throttle.py) is raised so that the correct ones still reach
    every operation."""
    settings = load_settings({**env, "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN})
    server = settings.server.model_copy(update={"auth_failure_limit": 1_000_000})
    file = settings.file.model_copy(update={"server": server})
    app = _loopback(create_app(settings.model_copy(update={"file": file})))
    try:
        yield app
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.timeout(300)
def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    fuzz_app: Any, runtime: Any
) -> None:
    started = time.monotonic()
    # Outsiders send generated (mostly wrong) credentials; the signed-in variants sign for
    # real, so their schema generates no credentials a negative case could "break".
    outsider = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    insider = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    insider.config.generation.update(with_security_parameters=False)
    seeded = _seed(fuzz_app, runtime)
    seen: Seen = collections.Counter()

    for result in outsider.get_all_operations():
        operation = result.ok()
        options = variants(operation.path, seeded)
        for variant in options:
            target = operation
            if variant.signed_in:
                target = insider[operation.path][operation.method.upper()]
            if variant.mode == NEG and not _negatable(target, variant):
                continue  # nothing left to break: GET /healthz, or every input fixed
            _fuzz(target, variant, _budget(operation.path, len(options)), seen)

    total, elapsed = sum(seen.values()), time.monotonic() - started
    by_operation: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for (label, _variant, status), n in seen.items():
        by_operation[label][status] += n
    print(f"\nschemathesis: {total} cases in {elapsed:.1f} s")
    for label, statuses in sorted(by_operation.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")

    assert total >= MIN_CASES
    reached = {(label, status) for label, statuses in by_operation.items() for status in statuses}
    assert MUST_REACH - reached == set()
