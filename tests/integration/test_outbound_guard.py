"""The outbound guard and target formats, against real servers on loopback."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.settings import TargetConfig
from app.signals import net
from app.signals.targets import Verdict, build, judge
from tests.counterparts import Served
from tests.support import FOURPASS_SECRET, FOURPASS_TOKEN, WEBHOOK_TARGET_SECRET


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # CGNAT
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("224.0.0.1", False),
    ],
)
def test_only_public_addresses_pass(address, public):
    assert net.is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.0.0.1", "10.0.0.1", "169.254.169.254", "[::ffff:127.0.0.1]", "0.0.0.0"],
)
def test_internal_targets_are_refused_before_anything_is_sent(host):
    hits: list[bytes] = []

    async def record(request: Request) -> Response:
        hits.append(await request.body())
        return Response(status_code=200)

    with Served(Starlette(routes=[Route("/", record, methods=["POST"])])) as served:
        url = f"http://{host}:{served.port}/"
        with pytest.raises(net.BlockedTarget, match="non-public address"):
            net.post(url, b"{}", {}, connect_timeout_s=1, read_timeout_s=1, allow_private=False)
    assert hits == []


def _redirector() -> Starlette:
    async def start(request: Request) -> Response:
        code = int(request.query_params["code"])
        return Response(status_code=code, headers={"location": "/final"})

    async def loop(_request: Request) -> Response:
        return Response(status_code=307, headers={"location": "/loop"})

    async def final(request: Request) -> Response:
        return Response(content=await request.body(), status_code=200)

    return Starlette(
        routes=[
            Route("/start", start, methods=["POST"]),
            Route("/loop", loop, methods=["POST"]),
            Route("/final", final, methods=["POST"]),
        ]
    )


def test_redirects_only_307_308_and_only_a_few():
    with Served(_redirector()) as served:

        def go(path: str) -> net.Reply:
            return net.post(
                f"{served.url}{path}",
                b"payload",
                {},
                connect_timeout_s=1,
                read_timeout_s=1,
                allow_private=True,
            )

        assert go("/start?code=307").text == "payload"  # followed, method and body kept
        assert go("/start?code=308").status == 200
        for code in (301, 302, 303):
            with pytest.raises(net.BlockedTarget, match=f"redirect {code} refused"):
                go(f"/start?code={code}")
        with pytest.raises(net.BlockedTarget, match="more than 3 redirects"):
            go("/loop")


def test_a_redirect_to_an_internal_address_is_refused(monkeypatch):
    async def bounce(_request: Request) -> Response:
        return Response(
            status_code=307, headers={"location": "http://169.254.169.254/latest/meta-data"}
        )

    real = net.is_public
    # This loopback server stands in for a public host; every other address is judged as usual.
    monkeypatch.setattr(net, "is_public", lambda a: str(a) == "127.0.0.1" or real(a))
    app = Starlette(routes=[Route("/", bounce, methods=["POST"])])
    # Refused twice over: another origin, and (were it the same host name) a non-public address.
    refused = pytest.raises(net.BlockedTarget, match=r"another origin.*169\.254\.169\.254")
    with Served(app) as served, refused:
        net.post(
            served.url + "/", b"{}", {}, connect_timeout_s=1, read_timeout_s=1, allow_private=False
        )


FOURPASS = TargetConfig(
    kind="fourpass",
    url=f"https://signals.example/webhook/{FOURPASS_TOKEN}/order",
    secret=FOURPASS_SECRET,
    simulation=False,
)
SECRET = WEBHOOK_TARGET_SECRET
WEBHOOK = TargetConfig(kind="webhook", url="https://treasury.example/hooks", secret=SECRET)
NOW = datetime(2026, 11, 21, 6, 30, 5, tzinfo=UTC)


def test_fourpass_request_is_seed_000s():
    url, body, headers = build(
        FOURPASS, {"action": "short_entry", "symbol": "MXFR1", "quantity": 2}, signal_id=7, now=NOW
    )
    assert url == f"https://signals.example/webhook/{FOURPASS_TOKEN}/order?simulation=false"
    assert orjson.loads(body) == {
        "action": "short_entry",
        "symbol": "MXFR1",
        "quantity": 2,
        "timestamp": "2026-11-21T06:30:05Z",
        "secret": FOURPASS_SECRET,
    }
    assert headers["content-type"] == "application/json"


def test_webhook_request_verifies_with_the_reference_library():
    url, body, headers = build(
        WEBHOOK, {"type": "contract.settled", "data": {"a": 1}}, signal_id=7, now=datetime.now(UTC)
    )
    assert url == "https://treasury.example/hooks"
    assert headers["webhook-id"] == "sig_7"
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "contract.settled"
    assert payload["data"] == {"a": 1}


@pytest.mark.parametrize(
    ("status", "fourpass", "webhook"),
    [
        (200, Verdict.DELIVERED, Verdict.DELIVERED),
        (204, Verdict.DELIVERED, Verdict.DELIVERED),
        (409, Verdict.DELIVERED, Verdict.DELIVERED),
        (401, Verdict.RETRY_FRESH, Verdict.DEAD),
        (400, Verdict.DEAD, Verdict.DEAD),
        (403, Verdict.DEAD, Verdict.DEAD),
        (404, Verdict.DEAD, Verdict.DEAD),
        (422, Verdict.DEAD, Verdict.DEAD),
        (429, Verdict.DEAD, Verdict.RETRY),
        (451, Verdict.DEAD, Verdict.DEAD),
        (500, Verdict.RETRY, Verdict.RETRY),
        (503, Verdict.RETRY, Verdict.RETRY),
    ],
)
def test_what_each_answer_means(status, fourpass, webhook):
    assert judge(FOURPASS, status) is fourpass
    assert judge(WEBHOOK, status) is webhook


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 of 169.254.169.254
        "::169.254.169.254",  # IPv4-compatible
        "::ffff:0:a9fe:a9fe",  # SIIT
        "2002:a9fe:a9fe::1",  # 6to4
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "fec0::1",  # site-local
        "192.0.0.8",
    ],
)
def test_ipv6_forms_that_embed_an_inside_address_are_refused(address):
    assert net.is_public(ipaddress.ip_address(address)) is False


def test_a_name_that_does_not_resolve_is_retryable_not_refused():
    with pytest.raises(net.Unresolvable):
        net.resolve("no-such-host.invalid", 443, allow_private=False)


def test_bad_redirects_are_refused_not_crashes():
    async def bounce(request: Request) -> Response:
        where = {
            "port": "http://127.0.0.1:99999/",
            "origin": "http://localhost:1/x",
            "user": "http://u:p@127.0.0.1/",
        }
        return Response(status_code=307, headers={"location": where[request.query_params["to"]]})

    with Served(Starlette(routes=[Route("/", bounce, methods=["POST"])])) as served:
        for to, message in (
            ("port", "bad port"),
            ("origin", "another origin"),
            ("user", "plain http"),
        ):
            with pytest.raises(net.BlockedTarget, match=message):
                net.post(
                    f"{served.url}/?to={to}",
                    b"{}",
                    {},
                    connect_timeout_s=1,
                    read_timeout_s=1,
                    allow_private=True,
                )
