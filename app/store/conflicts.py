"""Conflicts: callbacks with a stored event's idempotency key but another body.

They are answered ``duplicate`` (the key decides), and kept on the first event, one row per
distinct conflicting body (unique ``(event_id, body_sha256)``): when it was first and last
seen, how often, the redacted headers of its last send and which parsed fields differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from app.store.models import EventConflict, InboundEvent, table_of


def stored_bodies(
    session: Session, event_ids: Sequence[str]
) -> dict[str, tuple[bytes | None, str]]:
    """The raw body (``None`` once retention pruned it) and content type of each event."""
    stmt = select(
        col(InboundEvent.id),
        col(InboundEvent.body),
        col(InboundEvent.content_type),
        col(InboundEvent.body_pruned_at),
    ).where(col(InboundEvent.id).in_(list(event_ids)))
    return {
        event_id: (None if pruned is not None else bytes(body), media)
        for event_id, body, media, pruned in session.execute(stmt)
    }


def record(session: Session, conflict: dict[str, Any]) -> None:
    """Record one conflicting send (``event_conflicts`` columns but ``id`` and ``count``): a
    new row for a body not seen on that event before, else one more ``count``, a later
    ``last_at`` and the last send's headers. One statement. Does not commit."""
    table = table_of(EventConflict)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(**conflict, count=1)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["event_id", "body_sha256"],
            set_={
                "count": table.c.count + 1,
                "last_at": stmt.excluded.last_at,
                "headers": stmt.excluded.headers,
            },
        )
    )


def of_event(session: Session, event_id: str) -> list[dict[str, Any]]:
    """The conflicts kept on ``event_id``, first seen first."""
    rows = session.execute(
        select(EventConflict)
        .where(col(EventConflict.event_id) == event_id)
        .order_by(col(EventConflict.first_at), col(EventConflict.id))
    ).scalars()
    return [
        {
            "body_sha256": c.body_sha256,
            "first_at": c.first_at.isoformat(),
            "last_at": c.last_at.isoformat(),
            "count": c.count,
            "headers": orjson.loads(c.headers),
            "diff": orjson.loads(c.diff),
        }
        for c in rows
    ]
