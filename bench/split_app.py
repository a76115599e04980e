"""The app ``bench.ingest_split`` serves: hookledger's own, with the receipt's later stages cut
off as ``BENCH_SPLIT`` says. A diagnostic, never a deployment: cut stages answer ``accepted``
without storing anything.

- ``full``: unchanged.
- ``no-store``: verify, parse and validate, build the row, then answer (no Redis, no SQL).
- ``edge``: verify, then answer (no parsing, no row, no store).
"""

from __future__ import annotations

import os
from typing import Any

from app.ingest import Ingestor, Outcome, parse_receipt
from app.main import create_app

STAGE = os.environ.get("BENCH_SPLIT", "full")


async def _parse_only(self: Ingestor, **receipt: Any) -> Outcome:
    _, row = parse_receipt(**receipt)
    return Outcome("accepted", row["id"])


async def _nothing(self: Ingestor, **_: Any) -> Outcome:
    return Outcome("accepted", "evt_none")


if STAGE == "no-store":
    Ingestor.receive = _parse_only  # type: ignore[method-assign]
elif STAGE == "edge":
    Ingestor.receive = _nothing  # type: ignore[method-assign]
elif STAGE != "full":
    raise SystemExit(f"BENCH_SPLIT must be full, no-store or edge, not {STAGE!r}")

app = create_app()
