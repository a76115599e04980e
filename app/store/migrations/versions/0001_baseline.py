"""The schema of release 0.1.0

Release 0.1.0 made its tables with ``create_all``; this revision is that schema exactly, on
SQLite and PostgreSQL, so a 0.1.0 database is adopted by stamping it with this revision
(``app.store.schema``). On PostgreSQL it also holds the ledger's balance check: a statement
trigger on ``postings`` (insert, update and delete) that refuses any journal entry whose legs
do not sum to zero per currency, and the CHECK that ``io_type`` is the sign of ``amount``.
SQLite has no statement triggers with transition tables; there the code and ``ledger verify``
enforce both.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.store.db import ExactDecimal

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
ADDITIVE = False  # the first schema: nothing runs before it

# Every entry balances per currency. The check runs once per statement that inserts, updates
# or deletes postings, over the entries it touched (transition tables), not once per posting:
# the ledger writer inserts every posting of a batch of entries in one statement, so an entry is
# never written in pieces. TRUNCATE (no rows, no transition table) is not checked.
_BALANCED = """
CREATE OR REPLACE FUNCTION hl_entries_balanced() RETURNS trigger AS $$
DECLARE
  touched bigint[];
  bad bigint;
BEGIN
  -- An array, looked up with the entry_id index (a join against the transition table may
  -- be planned as a merge join that reads the index from its start).
  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(DISTINCT entry_id) INTO touched
    FROM (SELECT entry_id FROM hl_new UNION ALL SELECT entry_id FROM hl_old) AS t;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(DISTINCT entry_id) INTO touched FROM hl_old;
  ELSE
    SELECT array_agg(DISTINCT entry_id) INTO touched FROM hl_new;
  END IF;
  SELECT p.entry_id INTO bad FROM postings p
  WHERE p.entry_id = ANY(touched)
  GROUP BY p.entry_id, p.currency HAVING SUM(p.amount) <> 0 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal entry % does not balance', bad;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""
_TRIGGERS = {
    "hl_entries_balanced_insert": "AFTER INSERT ON postings REFERENCING NEW TABLE AS hl_new",
    "hl_entries_balanced_update": (
        "AFTER UPDATE ON postings REFERENCING OLD TABLE AS hl_old NEW TABLE AS hl_new"
    ),
    "hl_entries_balanced_delete": "AFTER DELETE ON postings REFERENCING OLD TABLE AS hl_old",
}


def upgrade() -> None:
    op.create_table(
        "account_balances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("balance", ExactDecimal(), nullable=False),
        sa.Column("last_posting_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "currency", name="uq_balance_account_ccy"),
    )
    op.create_table(
        "contracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("position_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("parent_position_id", sa.String(length=128), nullable=True),
        sa.Column("root_position_id", sa.String(length=128), nullable=True),
        sa.Column("c_order_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("buy_currency", sa.String(length=12), nullable=True),
        sa.Column("buy_amount", ExactDecimal(), nullable=True),
        sa.Column("sell_currency", sa.String(length=12), nullable=True),
        sa.Column("sell_amount", ExactDecimal(), nullable=True),
        sa.Column("price", ExactDecimal(), nullable=True),
        sa.Column("value_date", sa.String(length=10), nullable=True),
        sa.Column("violate_money", ExactDecimal(), nullable=True),
        sa.Column("violate_currency", sa.String(length=12), nullable=True),
        sa.Column("settlement_entry_id", sa.Integer(), nullable=True),
        sa.Column("penalty_entry_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "position_id", name="uq_contract_source_id"),
    )
    op.create_table(
        "hookledger_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "inbound_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("raw_type", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_job", sa.String(length=80), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_base", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("body_pruned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "idempotency_key", name="uq_inbound_source_key"),
    )
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_received", ["received_at"], unique=False)
        batch_op.create_index("ix_inbound_status_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=40), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=True),
        sa.Column("price", ExactDecimal(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("filled_amount", ExactDecimal(), nullable=False),
        sa.Column("filled_cash_amount", ExactDecimal(), nullable=False),
        sa.Column("filled_fees", ExactDecimal(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("err_code", sa.String(length=128), nullable=True),
        sa.Column("err_msg", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.String(length=40), nullable=False),
        sa.CheckConstraint(
            "filled_amount >= 0 AND filled_cash_amount >= 0 AND filled_fees >= 0",
            name="ck_order_amounts_non_negative",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "order_id", name="uq_order_source_id"),
    )
    op.create_table(
        "rental_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("rental_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.Integer(), nullable=False),
        sa.Column("receiver_address", sa.String(length=64), nullable=False),
        sa.Column("order_time_s", sa.BigInteger(), nullable=True),
        sa.Column("times", sa.BigInteger(), nullable=True),
        sa.Column("platform_ts_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "rental_id", name="uq_rental_source_id"),
    )
    op.create_table(
        "target_states",
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )
    op.create_table(
        "contract_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("contract_pk", sa.Integer(), nullable=False),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_pk"],
            ["contracts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_contract_event"),
    )
    with op.batch_alter_table("contract_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contract_events_contract_pk"), ["contract_pk"], unique=False
        )

    op.create_table(
        "deposits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("tx_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("from_address", sa.String(length=64), nullable=False),
        sa.Column("amount_sun", sa.BigInteger(), nullable=False),
        sa.Column("amount_trx", ExactDecimal(), nullable=False),
        sa.Column("created_at_text", sa.String(length=32), nullable=True),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_deposit_event"),
        sa.UniqueConstraint("source", "tx_hash", name="uq_deposit_source_hash"),
    )
    op.create_table(
        "event_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_actions_event_id"), ["event_id"], unique=False)

    op.create_table(
        "event_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_attempts_event_id"), ["event_id"], unique=False)

    op.create_table(
        "journal_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("business_type", sa.String(length=32), nullable=False),
        sa.Column("market", sa.String(length=16), nullable=False),
        sa.Column("product_code", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("date", sa.BigInteger(), nullable=False),
        sa.Column("sett_date", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_journal_event"),
    )
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_journal_entries_date"), ["date"], unique=False)

    op.create_table(
        "order_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("delta_filled_amount", ExactDecimal(), nullable=False),
        sa.Column("delta_filled_cash_amount", ExactDecimal(), nullable=False),
        sa.Column("delta_filled_fees", ExactDecimal(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_order_event"),
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_events_order_pk"), ["order_pk"], unique=False)

    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("body_stamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome_unknown", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_base", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "rule", name="uq_signal_event_rule"),
    )
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.create_index("ix_signals_status_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "trades",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("trade_id", sa.String(length=128), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("trade_time_ms", sa.BigInteger(), nullable=True),
        sa.Column("price", ExactDecimal(), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["inbound_events.id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "trade_id", name="uq_trade_source_id"),
    )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trades_order_pk"), ["order_pk"], unique=False)

    op.create_table(
        "postings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=False),
        sa.Column("io_type", sa.String(length=3), nullable=False),
        sa.Column("balance", ExactDecimal(), nullable=False),
        sa.Column("tran_type", sa.String(length=16), nullable=False),
        sa.Column("business_type", sa.String(length=32), nullable=False),
        sa.Column("business_sub_type", sa.String(length=16), nullable=False),
        sa.Column("market", sa.String(length=16), nullable=False),
        sa.Column("product_code", sa.String(length=128), nullable=False),
        sa.Column("product_name", sa.String(length=128), nullable=False),
        sa.Column("price", ExactDecimal(), nullable=True),
        sa.Column("qty", ExactDecimal(), nullable=True),
        sa.Column("fx_currency", sa.String(length=16), nullable=True),
        sa.Column("fx_amt", ExactDecimal(), nullable=True),
        sa.Column("fx_rate", ExactDecimal(), nullable=True),
        sa.Column("date", sa.BigInteger(), nullable=False),
        sa.Column("sett_date", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("io_type IN ('in', 'out')", name="ck_posting_io_type"),
        sa.CheckConstraint("amount <> 0", name="ck_posting_not_zero"),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_postings_account_currency", ["account_id", "currency", "id"], unique=False
        )
        batch_op.create_index("ix_postings_account_id", ["account_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_postings_entry_id"), ["entry_id"], unique=False)

    op.create_table(
        "signal_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("signal_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signal_attempts_signal_id"), ["signal_id"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.create_check_constraint("ck_posting_sign", "postings", "(io_type = 'in') = (amount > 0)")
        op.execute(_BALANCED)
        for name, when in _TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} {when} "
                "FOR EACH STATEMENT EXECUTE FUNCTION hl_entries_balanced()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON postings")
        op.execute("DROP FUNCTION IF EXISTS hl_entries_balanced()")
    with op.batch_alter_table("signal_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signal_attempts_signal_id"))

    op.drop_table("signal_attempts")
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postings_entry_id"))
        batch_op.drop_index("ix_postings_account_id")
        batch_op.drop_index("ix_postings_account_currency")

    op.drop_table("postings")
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trades_order_pk"))

    op.drop_table("trades")
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_status_due")

    op.drop_table("signals")
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_events_order_pk"))

    op.drop_table("order_events")
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journal_entries_date"))

    op.drop_table("journal_entries")
    with op.batch_alter_table("event_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_attempts_event_id"))

    op.drop_table("event_attempts")
    with op.batch_alter_table("event_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_actions_event_id"))

    op.drop_table("event_actions")
    op.drop_table("deposits")
    with op.batch_alter_table("contract_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contract_events_contract_pk"))

    op.drop_table("contract_events")
    op.drop_table("target_states")
    op.drop_table("rental_orders")
    op.drop_table("orders")
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_status_due")
        batch_op.drop_index("ix_inbound_received")

    op.drop_table("inbound_events")
    op.drop_table("hookledger_meta")
    op.drop_table("contracts")
    op.drop_table("account_balances")
