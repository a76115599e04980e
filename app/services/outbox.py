"""The transactional outbox: rules turn an applied event into signal rows, written in the
same transaction as the ledger effect. ``(event_id, rule)`` is unique, so a rule fires at most
once per event however often the event is redelivered or replayed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlmodel import Session

from app import kinds
from app.domain.payloads import ParsedEvent
from app.domain.rules import Facts, matches
from app.responses import dumps
from app.settings import RuleConfig, Settings
from app.store.db import insert_ignore
from app.store.models import InboundEvent, Signal, table_of


def facts_of(row: InboundEvent, parsed: ParsedEvent) -> Facts:
    """The fields rules match on; ``amount`` is the event's own amount, as its kind says."""
    assert parsed.event is not None
    amount = kinds.get(parsed.kind).rule_amount(parsed)
    return Facts(row.source_kind, row.source, parsed.event, parsed.symbol, amount)


def _payload(
    rule: RuleConfig,
    kind: str,
    row: InboundEvent,
    parsed: ParsedEvent,
    *,
    facts: Facts,
    account_id: str,
) -> str:
    if kind == "fourpass":
        assert rule.signal is not None
        if rule.signal.quantity > rule.max_quantity:  # settings refuse this; never send it anyway
            raise ValueError(f"rule {rule.name}: quantity over max_quantity")
        return dumps(rule.signal.model_dump()).decode()
    data: dict[str, Any] = {
        "event_id": row.id,
        "source": row.source,
        "source_kind": row.source_kind,
        "account_id": account_id,
        "symbol": facts.symbol,
        "amount": facts.amount,
        "rule": rule.name,
        "payload": orjson.loads(dumps(parsed.payload.model_dump(by_alias=True, mode="python"))),
    }
    if rule.signal is not None:
        data["signal"] = rule.signal.model_dump()
    return dumps({"type": facts.event, "data": data}).decode()


def write_signals(
    session: Session,
    row: InboundEvent,
    parsed: ParsedEvent,
    settings: Settings,
    *,
    account_id: str,
    now: datetime,
) -> list[int]:
    """Insert a signal for each matching rule; return the ids of the ones created now."""
    if parsed.event is None or not settings.file.rules:
        return []
    facts = facts_of(row, parsed)
    dialect = session.get_bind().dialect.name
    table = table_of(Signal)
    created = []
    for rule in settings.file.rules:
        if not matches(rule.when, facts):
            continue
        target = settings.file.targets[rule.target]
        values = {
            "event_id": row.id,
            "rule": rule.name,
            "target": rule.target,
            "status": "pending",
            "payload": _payload(rule, target.kind, row, parsed, facts=facts, account_id=account_id),
            "created_at": now,
            "enqueued_at": now,
            "attempts": 0,
            "retry_base": 0,
            "outcome_unknown": False,
        }
        stmt = insert_ignore(dialect, table, values, ["event_id", "rule"]).returning(table.c.id)
        new_id = session.execute(stmt).scalar_one_or_none()
        if new_id is not None:
            created.append(int(new_id))
    return created
