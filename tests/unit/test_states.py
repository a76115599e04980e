"""app.domain.states: monotonic merges, order-independent results, deltas the ledger applies."""

from __future__ import annotations

from decimal import Decimal
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.states import (
    CONTRACT_RANK,
    ORDER_RANK,
    RENTAL_RANK,
    OrderDelta,
    OrderState,
    merge_order,
    merge_ranked,
)

ZERO = Decimal(0)


def order(state: str, amount: str = "0", cash: str = "0", fees: str = "0") -> OrderState:
    return OrderState(state, Decimal(amount), Decimal(cash), Decimal(fees))


def fold(updates: list[OrderState]) -> tuple[OrderState | None, list[OrderDelta]]:
    current: OrderState | None = None
    deltas = []
    for update in updates:
        current, delta = merge_order(current, update)
        deltas.append(delta)
    return current, deltas


increments = st.decimals(
    min_value=0, max_value=Decimal("1000"), places=8, allow_nan=False, allow_infinity=False
)


@st.composite
def true_history(draw: st.DrawFn) -> list[OrderState]:
    """One order's updates as the venue sent them: ranks and cumulative amounts never fall."""
    steps = draw(st.integers(min_value=1, max_value=8))
    ranks = sorted(
        draw(st.lists(st.sampled_from(list(ORDER_RANK)), min_size=steps, max_size=steps)),
        key=ORDER_RANK.__getitem__,
    )
    amount = cash = fees = ZERO
    history = []
    for state in ranks:
        amount += draw(increments)
        cash += draw(increments)
        fees += draw(increments)
        history.append(OrderState(state, amount, cash, fees))
    return history


@st.composite
def history_and_delivery(draw: st.DrawFn) -> tuple[list[OrderState], list[OrderState]]:
    """A true history and an arrival order: any permutation, with redeliveries."""
    history = draw(true_history())
    repeats = draw(st.lists(st.sampled_from(history), max_size=6))
    delivered = draw(st.permutations(history + repeats))
    return history, delivered


@settings(max_examples=200, deadline=None)
@given(history_and_delivery())
def test_any_arrival_order_gives_the_same_final_order(
    case: tuple[list[OrderState], list[OrderState]],
) -> None:
    history, delivered = case
    expected, _ = fold(history)
    final, _ = fold(delivered)
    assert final == expected
    assert expected == history[-1]  # folding the true history ends where the venue ended


@settings(max_examples=200, deadline=None)
@given(history_and_delivery())
def test_deltas_are_never_negative_and_sum_to_the_final_amounts(
    case: tuple[list[OrderState], list[OrderState]],
) -> None:
    _, delivered = case
    final, deltas = fold(delivered)
    assert final is not None
    for delta in deltas:
        assert delta.filled_amount >= 0
        assert delta.filled_cash_amount >= 0
        assert delta.filled_fees >= 0
    assert sum((d.filled_amount for d in deltas), ZERO) == final.filled_amount
    assert sum((d.filled_cash_amount for d in deltas), ZERO) == final.filled_cash_amount
    assert sum((d.filled_fees for d in deltas), ZERO) == final.filled_fees


@settings(max_examples=200, deadline=None)
@given(history_and_delivery())
def test_redelivering_anything_already_merged_changes_nothing(
    case: tuple[list[OrderState], list[OrderState]],
) -> None:
    _, delivered = case
    final, _ = fold(delivered)
    for update in delivered:
        merged, delta = merge_order(final, update)
        assert merged == final
        assert not delta.moved_money
        assert not delta.state_changed


any_updates = st.lists(
    st.builds(OrderState, st.sampled_from(list(ORDER_RANK)), increments, increments, increments),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(any_updates.flatmap(lambda xs: st.tuples(st.just(xs), st.permutations(xs))))
def test_merge_is_order_independent_even_for_inconsistent_updates(
    case: tuple[list[OrderState], list[OrderState]],
) -> None:
    updates, shuffled = case
    assert fold(updates)[0] == fold(shuffled)[0]


def test_first_update_is_taken_whole() -> None:
    merged, delta = merge_order(None, order("partial-filled", "0.01", "420", "0.00002"))
    assert merged == order("partial-filled", "0.01", "420", "0.00002")
    assert delta == OrderDelta(Decimal("0.01"), Decimal("420"), Decimal("0.00002"), True)
    assert delta.moved_money


def test_partial_fill_then_fill_applies_only_the_growth() -> None:
    current, _ = merge_order(None, order("partial-filled", "0.01", "420", "0.00002"))
    merged, delta = merge_order(current, order("filled", "0.03", "1260", "0.00006"))
    assert merged == order("filled", "0.03", "1260", "0.00006")
    assert delta == OrderDelta(Decimal("0.02"), Decimal("840"), Decimal("0.00004"), True)


def test_late_submitted_after_filled_changes_nothing() -> None:
    filled = order("filled", "0.03", "1260", "0.00006")
    merged, delta = merge_order(filled, order("submitted"))
    assert merged == filled
    assert delta == OrderDelta(ZERO, ZERO, ZERO, state_changed=False)
    assert not delta.moved_money


def test_late_partial_fill_after_filled_changes_nothing() -> None:
    filled = order("filled", "0.03", "1260", "0.00006")
    merged, delta = merge_order(filled, order("partial-filled", "0.01", "420", "0.00002"))
    assert merged == filled
    assert not delta.moved_money
    assert not delta.state_changed


def test_amounts_grow_even_when_the_state_does_not() -> None:
    # A partial fill reported after a cancel still carries money the ledger has not seen.
    current = order("partial-canceled", "0.01", "420", "0")
    merged, delta = merge_order(current, order("partial-filled", "0.02", "840", "0.00004"))
    assert merged == order("partial-canceled", "0.02", "840", "0.00004")
    assert delta == OrderDelta(Decimal("0.01"), Decimal("420"), Decimal("0.00004"), False)


def test_filled_outranks_every_other_state() -> None:
    for state in ORDER_RANK:
        merged, _ = merge_order(order("filled"), order(state))
        assert merged.state == "filled"
        merged, _ = merge_order(order(state), order("filled"))
        assert merged.state == "filled"


def test_unknown_state_never_overrides_a_known_one() -> None:
    merged, delta = merge_order(order("submitted"), order("mystery"))
    assert merged.state == "submitted"
    assert not delta.state_changed
    merged, _ = merge_order(None, order("mystery"))
    assert merged.state == "mystery"


def test_merge_ranked_basics() -> None:
    assert merge_ranked(None, "created", CONTRACT_RANK) == "created"
    assert merge_ranked("created", "settled", CONTRACT_RANK) == "settled"
    assert merge_ranked("settled", "created", CONTRACT_RANK) == "settled"
    assert merge_ranked("canceled", "canceled", CONTRACT_RANK) == "canceled"
    assert merge_ranked("created", "unknown", CONTRACT_RANK) == "created"
    assert merge_ranked("unknown", "created", CONTRACT_RANK) == "created"


def test_merge_ranked_ties_keep_current() -> None:
    rank = {"a": 1, "b": 1}
    assert merge_ranked("a", "b", rank) == "a"
    assert merge_ranked("b", "a", rank) == "b"


def test_merge_ranked_rental_statuses() -> None:
    assert merge_ranked(0, 1, RENTAL_RANK) == 1
    assert merge_ranked(1, 0, RENTAL_RANK) == 1
    assert merge_ranked(1, -1, RENTAL_RANK) == -1
    assert merge_ranked(-1, 0, RENTAL_RANK) == -1


contract_statuses = st.lists(st.sampled_from(list(CONTRACT_RANK)), min_size=1, max_size=6)


@settings(max_examples=100, deadline=None)
@given(contract_statuses.flatmap(lambda xs: st.tuples(st.just(xs), st.permutations(xs))))
def test_merge_ranked_is_order_independent(case: tuple[list[str], list[str]]) -> None:
    statuses, shuffled = case

    def merge_all(items: list[str]) -> str | None:
        return reduce(lambda acc, s: merge_ranked(acc, s, CONTRACT_RANK), items, None)

    assert (
        merge_all(statuses) == merge_all(shuffled) == max(statuses, key=CONTRACT_RANK.__getitem__)
    )
