"""The ``trx-energy`` source kind: a TRON energy-rental platform's push notifications.
``type: "order"``: a rental order's status changed (key ``id`` + ``status``; the aggregate is the
rental order, its status ranked so it never moves back). ``type: "deposit"``: TRX arrived (key
``txHash``; ``amount`` in sun, posted as ``amount / 1,000,000`` TRX, once per transaction).
Any other ``type`` is stored and ends ``unhandled``. Gaps: rental orders still created after
their ``orderTime`` (``gaps``). Pull: ``GET {base_url}/orders/{id}`` with ``x-api-key`` (``pull``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import select
from sqlmodel import Session, SQLModel, col

from app.domain.payloads import ParsedEvent
from app.domain.states import RENTAL_RANK, merge_ranked
from app.kinds.base import ApplyContext, Breach, Gap, Listing, Pulled, PullFailed, SourceKind
from app.kinds.trx_energy.gaps import created_rentals
from app.kinds.trx_energy.journal import SUN_EXP, trx_deposit
from app.kinds.trx_energy.payload import ORDER_STATUS, DepositPush, RentalOrderPush, parse
from app.kinds.trx_energy.pull import pull_rental
from app.kinds.trx_energy.tables import Deposit, RentalOrder
from app.store.aggregates import Aggregate, count_by_event, locked, post
from app.store.db import insert_ignore
from app.store.models import InboundEvent, LedgerPosting, table_of


def deposit_row(d: Deposit) -> dict[str, Any]:
    return {
        "source": d.source,
        "tx_hash": d.tx_hash,
        "account_id": d.account_id,
        "address": d.address,
        "from_address": d.from_address,
        "amount_sun": d.amount_sun,
        "amount": d.amount_trx,
        "currency": "TRX",
        "created_at": d.created_at_text,
        "event_id": d.event_id,
    }


class TrxEnergy(SourceKind):
    name = "trx-energy"
    canonical_events = frozenset([*ORDER_STATUS.values(), "deposit.received"])
    business_types = frozenset({"deposit"})
    sample_body: ClassVar[dict[str, Any]] = {
        "type": "deposit",
        "id": 5,
        "address": "T9z6yrJXuiJpfWhis3Ae9nHK7k65yM5AHP",
        "fromAddress": "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ",
        "amount": 1000000000,
        "txHash": "9e1babdab1fc7c92ee3a254474763a43c75cf37350d1cd22c18a451183ede4be",
        "createdAt": "2025-10-08 16:49:17",
    }
    tables: ClassVar[tuple[type[SQLModel], ...]] = (RentalOrder, Deposit)
    listings: ClassVar[tuple[Listing, ...]] = (
        Listing("deposits", "deposit", Deposit, deposit_row),
    )

    def parse(self, data: dict[str, Any]) -> ParsedEvent:
        return parse(data)

    def aggregate(
        self, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> Aggregate | None:
        if isinstance(parsed.payload, RentalOrderPush):
            return _rental_of(row, parsed.payload, ctx)
        return None

    def apply(
        self, session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> None:
        if isinstance(parsed.payload, RentalOrderPush):
            _apply_rental(session, row, parsed.payload, ctx)
        else:
            assert isinstance(parsed.payload, DepositPush)
            _apply_deposit(session, row, parsed.payload, ctx)

    def rule_amount(self, parsed: ParsedEvent) -> Decimal | None:
        if isinstance(parsed.payload, DepositPush):
            return Decimal(parsed.payload.amount).scaleb(SUN_EXP)
        return None

    def verify(
        self, session: Session, breach: Breach, quote_currencies: tuple[str, ...]
    ) -> dict[str, int]:
        return {"deposits": _check_deposits(session, breach)}

    def effects(self, session: Session, event_ids: Sequence[str]) -> dict[str, int]:
        return {"deposits": count_by_event(session, Deposit, event_ids)}

    def gaps(
        self, session: Session, source: str, *, gap_after_s: float, now: datetime, limit: int
    ) -> list[Gap]:
        return created_rentals(session, source, gap_after_s=gap_after_s, now=now, limit=limit)

    can_pull = True

    async def pull(self, client: Any, pull: Any, ident: str) -> Pulled:
        if not pull.api_key:
            raise PullFailed("pull needs api_key (the platform's x-api-key)", outcome="refused")
        return await pull_rental(client, pull.base_url, pull.api_key, ident)


def _rental_of(row: InboundEvent, p: RentalOrderPush, ctx: ApplyContext) -> Aggregate:
    return Aggregate(
        RentalOrder,
        {"source": row.source, "rental_id": p.id},
        {
            "account_id": ctx.account_id,
            "status": -99,
            "resource_type": p.resourceType,
            "receiver_address": p.receiverAddress,
            "updated_at": ctx.now,
            "last_event_id": row.id,
        },
    )


def _apply_rental(
    session: Session, row: InboundEvent, p: RentalOrderPush, ctx: ApplyContext
) -> None:
    now = ctx.now
    rental: RentalOrder = locked(session, _rental_of(row, p, ctx))
    rental.status = merge_ranked(rental.status, p.status, RENTAL_RANK)
    rental.order_time_s = rental.order_time_s or p.orderTime
    rental.times = rental.times or p.times
    rental.platform_ts_ms = max(rental.platform_ts_ms or 0, p.timeStamp or 0) or None
    rental.updated_at = now
    rental.last_event_id = row.id
    session.add(rental)


def _apply_deposit(session: Session, row: InboundEvent, p: DepositPush, ctx: ApplyContext) -> None:
    now, account_id = ctx.now, ctx.account_id
    dialect = session.get_bind().dialect.name
    values = {
        "source": row.source,
        "tx_hash": p.txHash,
        "account_id": account_id,
        "address": p.address,
        "from_address": p.fromAddress,
        "amount_sun": p.amount,
        "amount_trx": Decimal(p.amount).scaleb(SUN_EXP),
        "created_at_text": p.createdAt,
        "event_id": row.id,
        "applied_at": now,
    }
    table = table_of(Deposit)
    stmt = insert_ignore(dialect, table, values, ["source", "tx_hash"]).returning(table.c.id)
    if session.execute(stmt).scalar_one_or_none() is not None:
        draft = trx_deposit(
            source=row.source, account_id=account_id, tx_hash=p.txHash, amount_sun=p.amount
        )
        post(session, row, draft, now)


def _check_deposits(session: Session, breach: Breach) -> int:
    rows = session.execute(
        select(Deposit, LedgerPosting).outerjoin(
            LedgerPosting,
            (col(LedgerPosting.event_id) == col(Deposit.event_id))
            & col(LedgerPosting.customer).is_(True),
        )
    ).all()
    for deposit, posting in rows:
        if posting is None:
            breach(f"deposit {deposit.tx_hash}: no journal entry")
        elif posting.amount != deposit.amount_trx:
            breach(
                f"deposit {deposit.tx_hash}: posted {posting.amount}, "
                f"deposited {deposit.amount_trx}"
            )
    return len(rows)
