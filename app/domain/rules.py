"""Follow-up rules: which applied events make a signal. Pure: values in, values out."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Facts:
    """What a rule can match on, about one applied event."""

    source_kind: str
    source: str
    event: str
    symbol: str | None
    amount: Decimal | None


def matches(when: Any, facts: Facts) -> bool:
    """True when every condition set in ``when`` (a ``RuleWhen``) holds for ``facts``."""
    for name in ("source_kind", "source", "event"):
        wanted = getattr(when, name)
        if wanted is not None and wanted != getattr(facts, name):
            return False
    if when.symbol is not None and (facts.symbol or "").lower() != when.symbol.lower():
        return False
    if when.min_amount is not None and (facts.amount is None or facts.amount < when.min_amount):
        return False
    return not (
        when.max_amount is not None and (facts.amount is None or facts.amount > when.max_amount)
    )
