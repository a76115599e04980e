"""The SSRF matrix, through the real delivery path.

Each case configures a live-mode 4pass target (its secret and URL token are canaries) at an
inside address, receives a callback that fires a rule, and lets the burst worker apply the
event and run the real delivery job (``workers.delivery.deliver_signal`` -> ``app.signals.net``).
The signal must end ``dead`` with the refusal recorded, before anything is sent: a recording
server listens on the port every loopback form points at, and must see nothing.

Name resolution is the one thing faked (the outside world: DNS): ``socket.getaddrinfo`` answers
chosen addresses for a few ``*.hooks.test`` names and defers to the real resolver otherwise.

Already covered in tests/integration/test_outbound_guard.py: ``net.is_public`` over single
addresses and IPv6 embeddings, ``net.post`` refusing a few literal hosts, the 307/308-only and
three-hop redirect rules, a cross-origin redirect to 169.254.169.254; and in
tests/integration/test_signals.py one dead signal for a 127.0.0.1 target.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.settings import Settings, load_settings
from app.signals import net
from app.store.models import Signal, SignalAttempt
from tests.counterparts import Served
from tests.support import FOURPASS_SECRET, FOURPASS_TOKEN, htx_update, post_htx, run_jobs

# the guard does not depend on the database
pytestmark = pytest.mark.sqlite_only

NON_PUBLIC = r"refused: .* resolves to a non-public address"


@dataclass(frozen=True)
class Case:
    id: str
    host: str  # as written in the target URL
    refusal: str = NON_PUBLIC  # what the recorded error must say
    dns: dict[str, list[list[str]]] = field(default_factory=dict)  # name -> successive answers
    redirect: tuple[int, str] | None = None  # the "public" server's answer: status, Location
    stand_in: str | None = None  # an address judged public here, standing in for a public host


def _redirected(
    status: int, location: str, refusal: str, *, rebind: bool = False
) -> dict[str, Any]:
    answers = [["127.0.0.1"], ["10.0.0.5"]] if rebind else [["127.0.0.1"]]
    return {
        "host": "public.hooks.test",
        "refusal": refusal,
        "dns": {"public.hooks.test": answers},
        "redirect": (status, location),
        "stand_in": "127.0.0.1",
    }


CASES = [
    # loopback, in the forms a URL parser and the resolver accept
    Case("loopback", "127.0.0.1"),
    Case("loopback-other", "127.0.0.2"),
    Case("loopback-short", "127.1"),
    Case("loopback-decimal", "2130706433"),
    Case("loopback-hex", "0x7f000001"),
    Case("loopback-octal", "0177.0.0.1"),
    Case("localhost", "localhost"),
    Case("localhost-upper", "LOCALHOST"),
    Case("ipv6-loopback", "[::1]"),
    Case("ipv4-mapped-loopback", "[::ffff:127.0.0.1]"),
    Case("ipv4-mapped-loopback-hex", "[::ffff:7f00:1]"),
    Case("unspecified", "0.0.0.0"),
    Case("unspecified-short", "0"),
    Case("ipv6-unspecified", "[::]"),
    # private ranges, both ends
    Case("10/8-low", "10.0.0.1"),
    Case("10/8-high", "10.255.255.254"),
    Case("172.16/12-low", "172.16.0.1"),
    Case("172.16/12-high", "172.31.255.254"),
    Case("192.168/16-low", "192.168.0.1"),
    Case("192.168/16-high", "192.168.255.254"),
    Case("cgnat", "100.64.0.1"),
    Case("ipv6-unique-local", "[fd00::1]"),
    # link-local and the cloud metadata address
    Case("metadata", "169.254.169.254"),
    Case("ipv4-mapped-metadata", "[::ffff:169.254.169.254]"),
    Case("ipv4-mapped-metadata-hex", "[::ffff:a9fe:a9fe]"),
    Case("nat64-metadata", "[64:ff9b::a9fe:a9fe]"),
    Case("ipv6-link-local", "[fe80::1]"),
    # names: judged on what they resolve to
    Case(
        "name-resolving-private", "internal.hooks.test", dns={"internal.hooks.test": [["10.1.2.3"]]}
    ),
    Case(
        "name-resolving-mapped-metadata",
        "metadata.hooks.test",
        dns={"metadata.hooks.test": [["::ffff:169.254.169.254"]]},
    ),
    Case(
        "name-with-one-inside-answer",  # the first answer is public; one inside is enough
        "mixed.hooks.test",
        dns={"mixed.hooks.test": [["93.184.216.34", "127.0.0.1"]]},
    ),
    # a public-looking server that redirects inside
    Case(
        "redirect-to-metadata",
        **_redirected(
            307, "http://169.254.169.254/latest/meta-data/", r"refused: redirect to another origin"
        ),
    ),
    Case(
        "redirect-to-loopback",
        **_redirected(308, "http://127.0.0.1:{port}/next", r"refused: redirect to another origin"),
    ),
    Case(
        "redirect-same-name-rebound-inside",
        **_redirected(307, "/next", NON_PUBLIC + r" \(10\.0\.0\.5\)", rebind=True),
    ),
    Case(
        "redirect-302-to-private",
        **_redirected(302, "http://10.0.0.1/", r"refused: redirect 302 refused"),
    ),
]


@dataclass
class Recorder:
    """The only server listening: every loopback form above points at its port."""

    redirect: tuple[int, str] | None = None
    hits: list[str] = field(default_factory=list)
    port: int = 0

    async def order(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        if self.redirect:
            status, location = self.redirect
            return Response(
                status_code=status, headers={"location": location.format(port=self.port)}
            )
        return JSONResponse({"status": "submitted"})

    async def next(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        return JSONResponse({"status": "submitted"})


@pytest.fixture
def recorder(case: Case) -> Iterator[Recorder]:
    rec = Recorder(redirect=case.redirect)
    app = Starlette(
        routes=[
            Route("/webhook/{token}/order", rec.order, methods=["POST"]),
            Route("/next", rec.next, methods=["POST"]),
        ]
    )
    with Served(app) as served:
        rec.port = served.port
        yield rec


@pytest.fixture
def settings(env: dict[str, str], config_path: Path, case: Case, recorder: Recorder) -> Settings:
    url = f"http://{case.host}:{recorder.port}/webhook/{FOURPASS_TOKEN}/order"
    config_path.write_text(
        config_path.read_text()
        + f"""
[targets.probe]
kind = "fourpass"
url = "{url}"
secret = "{FOURPASS_SECRET}"
simulation = false
connect_timeout_s = 1
read_timeout_s = 1
retry_delays_s = [0]

[[rules]]
name = "probe"
target = "probe"
when = {{ source_kind = "htx", event = "order.filled" }}
signal = {{ action = "long_entry", symbol = "TXFR1", quantity = 1 }}
"""
    )
    return load_settings(env)


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
    real = socket.getaddrinfo
    pending = {name: list(seq) for name, seq in answers.items()}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in pending:
            return real(host, port, *args, **kwargs)
        seq = pending[host]
        addrs = seq.pop(0) if len(seq) > 1 else seq[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addrs
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_ssrf_matrix_every_inside_address_is_refused_by_the_delivery_job(
    case: Case, client, runtime, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.dns:
        _fake_dns(monkeypatch, case.dns)
    if case.stand_in:
        real_is_public = net.is_public
        monkeypatch.setattr(
            net, "is_public", lambda a: str(a) == case.stand_in or real_is_public(a)
        )

    assert post_htx(client, htx_update(77, "filled", "1", "100", "0")).status_code == 200
    run_jobs(runtime)  # applies the event, writes the signal, runs its delivery job

    with Session(runtime.engine) as session:
        [sig] = session.execute(select(Signal)).scalars().all()
        attempts = (
            session.execute(select(SignalAttempt).where(col(SignalAttempt.signal_id) == sig.id))
            .scalars()
            .all()
        )
        status, error = sig.status, sig.last_error or ""
        tried = [(a.http_status, a.outcome) for a in attempts]
    assert status == "dead", error
    assert re.search(case.refusal, error), error
    assert tried == [(None, "dead")]  # refused, not retried: no connection was ever made inside
    assert FOURPASS_TOKEN not in error and FOURPASS_SECRET not in error
    if case.redirect:
        assert recorder.hits == [f"/webhook/{FOURPASS_TOKEN}/order"]  # the public hop only
    else:
        assert recorder.hits == []
