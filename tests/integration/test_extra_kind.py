"""A source kind added from the tests alone, through the plugin interface (``app.kinds``).

``parcel`` is a small made-up kind: a courier's callback that a parcel was delivered, with the
delivery fee the customer pays. It is written here, registered, configured like any shipped
kind, and driven through the public surface: a signed ``POST /hooks/{source}`` (its sample,
as ``hookledger sample`` prints it), a worker, the accountants' API, a rule, ``events show``'s
effects and ``ledger verify``. Nothing outside this file knows it exists.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, select
from starlette.testclient import TestClient

from app import kinds
from app.domain.journal import EntryDraft, Posting, checked
from app.domain.payloads import Amount, Id, ParsedEvent, validate
from app.kinds.base import ApplyContext, Breach, SourceKind
from app.main import create_app
from app.runtime import build_runtime, set_runtime
from app.samples import sample_curl
from app.settings import load_settings
from app.store import ops
from app.store.aggregates import post
from app.store.models import InboundEvent, Signal
from tests.support import FINANCE_SECRET, api_get, canary, run_jobs

PARCEL_SECRET = canary("parcel-courier")


class Delivered(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    parcel_id: Id
    status: str
    fee: Amount
    currency: str


class Parcel(SourceKind):
    name = "parcel"
    canonical_events = frozenset({"parcel.delivered"})
    business_types = frozenset({"parcel_fee"})
    sample_body: ClassVar[dict[str, Any]] = {
        "parcel_id": "P-1",
        "status": "delivered",
        "fee": "4.20",
        "currency": "USD",
    }

    def parse(self, data: dict[str, Any]) -> ParsedEvent:
        body = validate(Delivered, data)
        return ParsedEvent(
            kind=self.name,
            raw_type=body.status,
            event="parcel.delivered" if body.status == "delivered" else None,
            idempotency_key=f"{body.parcel_id}:{body.status}",
            payload=body,
            symbol=body.currency.lower(),
        )

    def apply(
        self, session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> None:
        body = parsed.payload
        assert isinstance(body, Delivered)
        detail = {"tran_type": "fee", "business_sub_type": "fee"}
        draft = EntryDraft(
            business_type="parcel_fee",
            market="parcel",
            product_code=body.parcel_id,
            product_name=f"delivery of {body.parcel_id}",
            description="delivery fee",
            postings=(
                Posting(ctx.account_id, body.currency, -body.fee, True, **detail),
                Posting(f"{row.source}:courier", body.currency, body.fee, False, **detail),
            ),
        )
        post(session, row, checked(draft), ctx.now)

    def rule_amount(self, parsed: ParsedEvent) -> Decimal | None:
        assert isinstance(parsed.payload, Delivered)
        return parsed.payload.fee

    def verify(
        self, session: Session, breach: Breach, quote_currencies: tuple[str, ...]
    ) -> dict[str, int]:
        delivered = session.execute(
            select(InboundEvent).where(InboundEvent.source_kind == self.name)
        ).all()
        return {"parcel events": len(delivered)}

    def effects(self, session: Session, event_ids: Sequence[str]) -> dict[str, int]:
        return {"parcels": len(event_ids)}


CONFIG = f"""
[processing]
queue = "hl-test"
enqueue_linger_ms = 0
retry_delays_s = [0, 0]

[sources.parcels]
kind = "parcel"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["{PARCEL_SECRET}"]

[api_keys.finance]
key = "ak_finance"
secret = "{FINANCE_SECRET}"
accounts = ["1001"]

[targets.ops-hook]
kind = "fourpass"
url = "http://127.0.0.1:9/webhook/parcels/order"
allow_private = true

[[rules]]
name = "big-parcel-fees"
target = "ops-hook"
when = {{ source_kind = "parcel", event = "parcel.delivered", min_amount = "4" }}
signal = {{ action = "long_entry", symbol = "PARCEL", quantity = 1 }}
"""


@pytest.fixture
def parcel_kind() -> Iterator[Parcel]:
    kind = Parcel()
    kinds.register(kind)
    yield kind
    kinds.unregister(kind.name)


@pytest.fixture
def parcel_app(parcel_kind, tmp_path: Path, database_url: str, redis_url: str):
    config = tmp_path / "parcel.toml"
    config.write_text(textwrap.dedent(CONFIG))
    settings = load_settings(
        {
            "HOOKLEDGER_CONFIG": str(config),
            "HOOKLEDGER_DATABASE_URL": database_url,
            "HOOKLEDGER_REDIS_URL": redis_url,
        }
    )
    runtime = build_runtime(settings)
    set_runtime(runtime)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        yield settings, runtime, client
    set_runtime(None)


def _post_sample(client: TestClient, settings, body: dict[str, Any] | None = None):
    """Post what ``hookledger sample`` prints for the parcel source (optionally another body)."""
    import shlex

    source = settings.sources["parcels"]
    if body is not None:
        Parcel.sample_body = body  # the sample is the kind's; sign another body the same way
    words = shlex.split(sample_curl("parcels", source, "http://testserver"))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    data = words[words.index("--data-raw") + 1].encode()
    return client.post("/hooks/parcels", content=data, headers=headers)


def test_a_kind_from_the_tests_goes_through_every_surface(parcel_app):
    settings, runtime, client = parcel_app
    original = dict(Parcel.sample_body)
    try:
        first = _post_sample(client, settings)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "accepted"
        assert _post_sample(client, settings).json()["status"] == "duplicate"
        small = _post_sample(client, settings, {**original, "parcel_id": "P-2", "fee": "0.80"})
        assert small.json()["status"] == "accepted"
        wrong = client.post(
            "/hooks/parcels",
            content=b'{"parcel_id": "P-3"}',
            headers={"content-type": "application/json", "x-signature": "0" * 64},
        )
        assert wrong.status_code == 401
    finally:
        Parcel.sample_body = original
    run_jobs(runtime)

    with Session(runtime.engine) as session:
        events = session.execute(select(InboundEvent).order_by(InboundEvent.id)).scalars().all()
        assert [e.status for e in events] == ["processed", "processed"]
        signals = session.execute(select(Signal)).scalars().all()
        # The rule matched the kind's facts: only the fee of at least 4 made a signal.
        assert [(s.rule, s.event_id) for s in signals] == [
            ("big-parcel-fees", first.json()["event_id"])
        ]
        shown = ops.detail(session, first.json()["event_id"], kinds.effect_counters())
        assert shown["effects"]["parcels"] == 1
        assert [p["amount"] for p in shown["effects"]["postings"]] == [
            Decimal("-4.20"),
            Decimal("4.20"),
        ]
        report = kinds.verify_ledger(session, settings.file.ledger.quote_currencies)
    assert report.ok, report.breaches
    assert report.checked["parcel events"] == 2

    answer = api_get(client, "/account/v1/transactions?business_type=parcel_fee")
    assert answer.status_code == 200, answer.text
    rows = answer.json()["data"]["transactions"]
    assert [(r["market"], r["product_code"], r["io_type"], r["amt"]) for r in rows] == [
        ("parcel", "P-1", "out", 4.2),
        ("parcel", "P-2", "out", 0.8),
    ]
    assert rows[-1]["balance"] == -5


def test_settings_know_a_registered_kind_and_refuse_an_unknown_one(parcel_kind, tmp_path):
    config = tmp_path / "parcel.toml"
    config.write_text(textwrap.dedent(CONFIG))
    settings = load_settings({"HOOKLEDGER_CONFIG": str(config)})
    assert settings.sources["parcels"].kind == "parcel"
    kinds.unregister("parcel")
    from app.settings import ConfigError

    with pytest.raises(ConfigError, match=r"sources\.parcels\.kind: Input should be"):
        load_settings({"HOOKLEDGER_CONFIG": str(config)})
