"""Monotonic state merges. Pure functions over values.

An order's state is a join-semilattice: merging an update keeps the higher-ranked state and the
larger of each cumulative amount. The merge is commutative, associative and idempotent, so the
final order is the same whatever order its callbacks arrive in and however often each arrives.
``merge_order`` also returns what grew, which is exactly what the ledger has not applied yet.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

# Ranks: a late 'submitted' never overrides anything; terminal states outrank live ones.
# Among terminals the rank only has to be a fixed total order, for determinism.
ORDER_RANK = {
    "submitted": 0,
    "partial-filled": 1,
    "rejected": 2,
    "canceled": 3,
    "partial-canceled": 4,
    "filled": 5,
}
CONTRACT_RANK = {"created": 0, "canceled": 1, "settled": 2}
RENTAL_RANK = {0: 0, 1: 1, -1: 2}


@dataclass(frozen=True, slots=True)
class OrderState:
    state: str
    filled_amount: Decimal
    filled_cash_amount: Decimal
    filled_fees: Decimal


@dataclass(frozen=True, slots=True)
class OrderDelta:
    """What an update added to an order: amounts never negative."""

    filled_amount: Decimal
    filled_cash_amount: Decimal
    filled_fees: Decimal
    state_changed: bool

    @property
    def moved_money(self) -> bool:
        return bool(self.filled_amount or self.filled_cash_amount or self.filled_fees)


def _state_key(state: str) -> tuple[int, str]:
    return (ORDER_RANK.get(state, -1), state)


def merge_order(current: OrderState | None, update: OrderState) -> tuple[OrderState, OrderDelta]:
    """Return the merged order and what the update added over ``current``."""
    if current is None:
        current = OrderState("", Decimal(0), Decimal(0), Decimal(0))
    state = max(current.state, update.state, key=_state_key) if current.state else update.state
    merged = OrderState(
        state=state,
        filled_amount=max(current.filled_amount, update.filled_amount),
        filled_cash_amount=max(current.filled_cash_amount, update.filled_cash_amount),
        filled_fees=max(current.filled_fees, update.filled_fees),
    )
    delta = OrderDelta(
        filled_amount=merged.filled_amount - current.filled_amount,
        filled_cash_amount=merged.filled_cash_amount - current.filled_cash_amount,
        filled_fees=merged.filled_fees - current.filled_fees,
        state_changed=merged.state != current.state,
    )
    return merged, delta


def merge_ranked(current: K | None, update: K, rank: Mapping[K, int]) -> K:
    """Return whichever of two statuses ranks higher (ties keep ``current``); unknown ranks -1."""
    if current is None:
        return update
    return update if rank.get(update, -1) > rank.get(current, -1) else current
