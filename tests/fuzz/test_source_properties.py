"""Property tests of the source parsers (htx, pingpong, trx-energy), through ``parse_event`` as
the edge calls it.

- Any bytes, any JSON value, any object of the kind's own field names with any values: the
  parser returns an event or raises ``BadRequest`` (400) or ``ValidationFailed`` (422), nothing
  else, and a 422's body always serialises, bounded.
- Valid payloads keep every amount as the exact ``Decimal`` that was written, whether as a JSON
  number or as text, and nothing in a parsed payload is a float.
- The idempotency key is a function of the identifying fields only: stable across key order,
  whitespace, escaping, number spelling and the other fields; different when they differ.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.domain.errors import BadRequest, ValidationFailed
from app.domain.money import canonical
from app.domain.payloads import FORM, JSON, ParsedEvent
from app.kinds import parse_event
from app.responses import dumps
from app.routes.errors import status_of

KINDS = ("htx", "pingpong", "trx-energy")
HTX_FIELDS = [
    "order-id", "client-order-id", "account-id", "symbol", "type", "amount", "price",
    "created-at", "filled-amount", "filled-cash-amount", "filled-fees", "source", "state",
    "err-code", "err-msg", "trade",
]  # fmt: skip
PP_FIELDS = ["event_type", "msg_id", "payload"]
PP_PAYLOAD_FIELDS = [
    "position_id", "parent_position_id", "root_position_id", "c_order_id", "buy_currency",
    "buy_amount", "sell_currency", "sell_amount", "price", "base_currency", "price2",
    "base_currency2", "status", "status_desc", "value_date", "open_time", "pay_way",
    "violate_date", "violate_money", "violate_currency", "trade_channel", "source_type",
    "cancel_way",
]  # fmt: skip
TRX_FIELDS = [
    "type", "id", "orderTime", "orderType", "receiverAddress", "resourceType", "source",
    "status", "timeStamp", "times", "address", "fromAddress", "amount", "txHash", "createdAt",
]  # fmt: skip
TRX_ADDRESS = "TJqiMSSmRtm4LvXrYBWysz9DnNrFQDaBv9"
TRX_FROM = "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ"
MAX_ERROR_BODY = 64 * 1024

# ---------------------------------------------------------------- writing JSON exactly


def write(value: Any, *, ensure_ascii: bool = True, sort: bool = False) -> bytes:
    """JSON bytes with every ``Decimal`` written as its exact text (the stdlib cannot)."""

    def text(v: Any) -> str:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, list):
            return "[" + ",".join(map(text, v)) + "]"
        if isinstance(v, dict):
            items = sorted(v.items()) if sort else v.items()
            return "{" + ",".join(json.dumps(k) + ":" + text(x) for k, x in items) + "}"
        return json.dumps(v, ensure_ascii=ensure_ascii)

    # Lone surrogates, when not escaped, become the invalid UTF-8 a hostile sender could send.
    return text(value).encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------- strategies

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.sampled_from(["\x00", "\ud800", "\udfff", "a", " ", "-", "T", "0"]), max_size=8),
    st.text(min_size=129, max_size=160),  # just over the 128-character id limit
)
# Edges hypothesis rarely draws by itself: just past 64 bits (orjson cannot write those).
EDGE_NUMBERS = [2**63 - 1, 2**63, -(2**63) - 1, 2**64, -(10**40), 10**63]
numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(hostile_text, children, max_size=5)
    ),
    max_leaves=12,
)


def objects_of(fields: list[str], extra: dict[str, st.SearchStrategy[Any]] | None = None) -> Any:
    """Objects of the kind's own field names (so validators run) with hostile values."""
    fixed = extra or {}
    return st.fixed_dictionaries(
        fixed, optional={name: json_values for name in fields if name not in fixed}
    ) | st.dictionaries(st.sampled_from(fields) | hostile_text, json_values, max_size=8)


kind_objects = {
    "htx": objects_of(HTX_FIELDS),
    "pingpong": objects_of(
        PP_FIELDS,
        {
            "event_type": st.sampled_from(["positionCreate", "positionCancel", "positionSettle"])
            | hostile_text,
            "payload": objects_of(PP_PAYLOAD_FIELDS),
        },
    ),
    "trx-energy": objects_of(
        TRX_FIELDS, {"type": st.sampled_from(["order", "deposit"]) | json_values}
    ),
}


@st.composite
def amounts(draw: st.DrawFn, *, positive: bool = False) -> str:
    """Plain decimal text that fits NUMERIC(38, 18): up to 20 integer and 18 fraction digits."""
    whole = draw(st.integers(min_value=0, max_value=10**20 - 1))
    fraction = draw(st.text("0123456789", max_size=18))
    text = f"{whole}.{fraction}" if fraction else str(whole)
    if positive and Decimal(text) == 0:
        text = "1" + text.lstrip("0") if "." not in text else text[:-1] + "1"
    return text


def spelled(text: str) -> st.SearchStrategy[Any]:
    """The same amount as a JSON number (exact) or as JSON text."""
    return (
        st.sampled_from([Decimal(text), text])
        if "." in text
        else st.sampled_from([int(text), text, Decimal(text + ".0")])
    )


ids = st.integers(min_value=1, max_value=2**62) | st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=40
)

# ---------------------------------------------------------------- the outcome contract


def floats_in(value: Any) -> list[Any]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats_in(v)]
    if isinstance(value, list | tuple):
        return [f for v in value for f in floats_in(v)]
    return []


def outcome(kind: str, body: bytes, media: str = JSON) -> ParsedEvent | None:
    """Parse; allow only an event, a 400 or a 422 whose body serialises, bounded."""
    try:
        event = parse_event(kind, body, media)
    except BadRequest as exc:
        assert status_of(exc) == 400
        assert exc.message
        dumps(exc.body())
        return None
    except ValidationFailed as exc:
        assert status_of(exc) == 422
        assert exc.detail
        for error in exc.detail:
            assert set(error) == {"type", "loc", "msg", "input"}
            assert error["loc"][0] == "body"
        assert len(dumps(exc.body())) < MAX_ERROR_BODY
        return None
    assert event.kind == kind
    assert isinstance(event.idempotency_key, str)
    assert event.idempotency_key
    assert floats_in(event.payload.model_dump()) == []
    return event


# ---------------------------------------------------------------- never anything but 400/422


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), body=st.binary(max_size=300))
def test_arbitrary_bytes_are_an_event_a_400_or_a_422(kind: str, body: bytes) -> None:
    outcome(kind, body)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_form_bodies_are_an_event_a_400_or_a_422(body: bytes) -> None:
    outcome("htx", body, FORM)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), value=json_values, ensure_ascii=st.booleans())
@example(kind="trx-energy", value={"id": 2**64}, ensure_ascii=True)  # once a 500
def test_arbitrary_json_values_are_an_event_a_400_or_a_422(
    kind: str, value: Any, ensure_ascii: bool
) -> None:
    outcome(kind, write(value, ensure_ascii=ensure_ascii))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), kind=st.sampled_from(KINDS), ensure_ascii=st.booleans())
def test_objects_of_the_kinds_own_fields_are_an_event_a_400_or_a_422(
    data: st.DataObject, kind: str, ensure_ascii: bool
) -> None:
    value = data.draw(kind_objects[kind])
    outcome(kind, write(value, ensure_ascii=ensure_ascii))


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(HTX_FIELDS) | hostile_text, hostile_text))
def test_form_fields_with_any_text_are_an_event_a_400_or_a_422(fields: dict[str, str]) -> None:
    body = urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()
    outcome("htx", body, FORM)


# ---------------------------------------------------------------- exact decimals


@st.composite
def htx_orders(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """A valid HTX order and the decimal text of each amount in it."""
    texts = {
        name: draw(amounts())
        for name in ("amount", "price", "filled-amount", "filled-cash-amount", "filled-fees")
    }
    trades = [
        (draw(amounts()), draw(amounts(positive=True)))
        for _ in range(draw(st.integers(min_value=0, max_value=3)))
    ]
    order: dict[str, Any] = {
        "order-id": draw(ids),
        "symbol": draw(st.sampled_from(["btcusdt", "ethusdt", "trxusdt"])),
        "type": draw(st.sampled_from(["buy-limit", "sell-market", "buy-ioc"])),
        "state": draw(st.sampled_from(["submitted", "partial-filled", "filled", "canceled"])),
        **{name: draw(spelled(text)) for name, text in texts.items()},
        "trade": [
            {"trade-id": n, "trade-price": draw(spelled(p)), "trade-amount": draw(spelled(a))}
            for n, (p, a) in enumerate(trades)
        ],
    }
    for n, (p, a) in enumerate(trades):
        texts[f"trade{n}-price"], texts[f"trade{n}-amount"] = p, a
    return order, texts


@settings(max_examples=200, deadline=None)
@given(drawn=htx_orders(), ensure_ascii=st.booleans())
def test_htx_amounts_are_the_exact_decimals_written(
    drawn: tuple[dict[str, Any], dict[str, str]], ensure_ascii: bool
) -> None:
    order, texts = drawn
    event = outcome("htx", write(order, ensure_ascii=ensure_ascii))
    assert event is not None
    p: Any = event.payload
    got = {
        "amount": p.amount,
        "price": p.price,
        "filled-amount": p.filled_amount,
        "filled-cash-amount": p.filled_cash_amount,
        "filled-fees": p.filled_fees,
    }
    for n, trade in enumerate(p.trade):
        got[f"trade{n}-price"], got[f"trade{n}-amount"] = trade.trade_price, trade.trade_amount
    for name, text in texts.items():
        assert type(got[name]) is Decimal, name
        assert got[name] == Decimal(text), name


@settings(max_examples=200, deadline=None)
@given(drawn=htx_orders())
def test_htx_form_encoding_gives_the_same_amounts_and_key(
    drawn: tuple[dict[str, Any], dict[str, str]],
) -> None:
    order, _texts = drawn
    as_json = outcome("htx", write(order))
    fields = {k: str(v) for k, v in order.items() if k != "trade"}
    fields["trade"] = write(order["trade"]).decode()
    as_form = outcome("htx", urlencode(fields).encode(), FORM)
    assert as_json is not None
    assert as_form is not None
    assert as_form.idempotency_key == as_json.idempotency_key
    form: Any = as_form.payload
    plain: Any = as_json.payload
    for name in ("amount", "price", "filled_amount", "filled_cash_amount", "filled_fees"):
        assert getattr(form, name) == getattr(plain, name), name
    assert [(t.trade_price, t.trade_amount) for t in form.trade] == [
        (t.trade_price, t.trade_amount) for t in plain.trade
    ]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), event_type=st.sampled_from(["positionSettle", "positionCancel"]))
def test_pingpong_amounts_are_the_exact_decimals_written(
    data: st.DataObject, event_type: str
) -> None:
    texts = {
        name: data.draw(amounts())
        for name in ("buy_amount", "sell_amount", "price", "price2", "violate_money")
    }
    payload = {
        "position_id": data.draw(ids),
        "buy_currency": "CNH",
        "sell_currency": "MXN",
        "violate_currency": "CNH",
        "trade_channel": "api",
        "source_type": "spot",
        **{name: data.draw(spelled(text)) for name, text in texts.items()},
    }
    body = write({"event_type": event_type, "msg_id": data.draw(ids), "payload": payload})
    event = outcome("pingpong", body)
    assert event is not None
    parsed: Any = event.payload
    for name, text in texts.items():
        value = getattr(parsed.payload, name)
        assert type(value) is Decimal, name
        assert value == Decimal(text), name


@settings(max_examples=200, deadline=None)
@given(sun=st.integers(min_value=1, max_value=10**18), as_text=st.booleans())
def test_trx_deposit_amounts_are_exact_integers_of_sun(sun: int, as_text: bool) -> None:
    deposit = {
        "type": "deposit",
        "address": TRX_ADDRESS,
        "fromAddress": TRX_FROM,
        "amount": str(sun) if as_text else sun,
        "txHash": "ab" * 32,
    }
    event = outcome("trx-energy", write(deposit))
    assert event is not None
    parsed: Any = event.payload
    assert parsed.amount == sun
    assert type(parsed.amount) is int


# ---------------------------------------------------------------- stable idempotency keys


@st.composite
def respelled(draw: st.DrawFn, value: dict[str, Any]) -> bytes:
    """The same JSON object written differently: key order, whitespace, escaping."""
    keys = draw(st.permutations(list(value)))
    shuffled = {k: value[k] for k in keys}
    text = write(shuffled, ensure_ascii=draw(st.booleans())).decode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        text = text.replace(",", ", ").replace(":", ": ")  # whitespace; text values have none
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=200, deadline=None)
@given(drawn=htx_orders(), data=st.data())
def test_htx_key_is_order_state_and_normalised_fill_only(
    drawn: tuple[dict[str, Any], dict[str, str]], data: st.DataObject
) -> None:
    order, texts = drawn
    first = outcome("htx", write(order))
    assert first is not None
    again = outcome("htx", data.draw(respelled(order)))
    assert again is not None
    assert again.idempotency_key == first.idempotency_key
    # Other fields, and the fill written with extra zeros or as text, do not change it.
    filled = texts["filled-amount"]
    zeros = filled + ("0" if "." in filled else ".000")
    changed = order | {
        "filled-amount": data.draw(st.sampled_from([zeros, Decimal(zeros)])),
        "filled-cash-amount": "1",
        "price": "2",
        "trade": [],
        "client-order-id": "other",
    }
    other = outcome("htx", write(changed))
    assert other is not None
    assert other.idempotency_key == first.idempotency_key
    expected = f"{str(order['order-id']).strip()}:{order['state']}:{canonical(Decimal(filled))}"
    assert first.idempotency_key == expected
    # A different fill, state or order is a different event.
    more = str(Decimal(filled) + 1) if Decimal(filled) < 10**19 else "0"
    for change in ({"filled-amount": more}, {"state": "rejected"}, {"order-id": "x-other"}):
        different = outcome("htx", write(order | change))
        assert different is not None
        assert different.idempotency_key != first.idempotency_key, change


@settings(max_examples=200, deadline=None)
@given(msg_id=ids, data=st.data())
def test_pingpong_key_is_the_msg_id(msg_id: Any, data: st.DataObject) -> None:
    payload = {"position_id": "P1", "trade_channel": "api", "source_type": "spot"}
    event = {
        "event_type": data.draw(st.sampled_from(["positionExtend", "positionCreate"])),
        "msg_id": msg_id,
        "payload": payload,
    }
    first = outcome("pingpong", write(event))
    again = outcome("pingpong", data.draw(respelled(event)))
    assert first is not None
    assert again is not None
    assert first.idempotency_key == again.idempotency_key == str(msg_id).strip()
    changed = outcome("pingpong", write(event | {"payload": payload | {"status": "other"}}))
    assert changed is not None
    assert changed.idempotency_key == first.idempotency_key


@settings(max_examples=200, deadline=None)
@given(rental=ids, status=st.sampled_from([0, 1, -1, 7]), data=st.data())
def test_trx_order_key_is_id_and_status(rental: Any, status: int, data: st.DataObject) -> None:
    order = {
        "type": "order",
        "id": rental,
        "receiverAddress": TRX_ADDRESS,
        "resourceType": data.draw(st.sampled_from([0, 1])),
        "status": status,
        "times": data.draw(st.integers(min_value=0, max_value=100)),
    }
    first = outcome("trx-energy", write(order))
    again = outcome("trx-energy", data.draw(respelled(order)))
    assert first is not None
    assert again is not None
    assert first.idempotency_key == again.idempotency_key == f"order:{rental}:{status}"
    other = outcome("trx-energy", write(order | {"status": status + 1}))
    assert other is not None
    assert other.idempotency_key != first.idempotency_key


@settings(max_examples=200, deadline=None)
@given(tx_hash=st.text("0123456789abcdefABCDEF", min_size=64, max_size=64), data=st.data())
def test_trx_deposit_key_is_the_lowercased_tx_hash(tx_hash: str, data: st.DataObject) -> None:
    deposit = {
        "type": "deposit",
        "id": data.draw(st.none() | ids),
        "address": TRX_ADDRESS,
        "fromAddress": TRX_FROM,
        "amount": data.draw(st.integers(min_value=1, max_value=10**18)),
        "txHash": tx_hash,
    }
    first = outcome("trx-energy", write(deposit))
    again = outcome("trx-energy", data.draw(respelled(deposit | {"txHash": tx_hash.swapcase()})))
    assert first is not None
    assert again is not None
    assert first.idempotency_key == again.idempotency_key == f"deposit:{tx_hash.lower()}"
