"""The shipped source kinds (app.kinds): media types, decoding, canonical events, idempotency keys, 422 detail."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from app import kinds
from app.domain.errors import BadRequest, UnsupportedMedia, ValidationFailed
from app.domain.payloads import FORM, JSON, ParsedEvent
from app.kinds import accepted_media_type as check_media_type
from app.kinds import parse_event
from app.routes.errors import status_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TX_HASH = "9e1babdab1fc7c92ee3a254474763a43c75cf37350d1cd22c18a451183ede4be"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def raw_fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(kind: str, data: dict[str, Any]) -> ParsedEvent:
    return parse_event(kind, json.dumps(data).encode(), JSON)


def failure(kind: str, data: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as info:
        parse_event(kind, json.dumps(data).encode(), JSON)
    detail = info.value.detail
    assert detail
    for error in detail:
        assert set(error) == {"type", "loc", "msg", "input"}
        assert error["loc"][0] == "body"
        assert isinstance(error["msg"], str)
        assert isinstance(error["type"], str)
    assert status_of(info.value) == 422
    assert info.value.body() == {"detail": detail}
    return detail


def locs(detail: list[dict[str, Any]]) -> list[list[Any]]:
    return [error["loc"] for error in detail]


# ---------------------------------------------------------------- media types


def test_every_kind_has_a_parser() -> None:
    assert set(kinds.names()) == {"htx", "pingpong", "trx-energy"}


@pytest.mark.parametrize("kind", ["htx", "pingpong", "trx-energy"])
@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON ; charset=UTF-8"],
)
def test_json_with_parameters_is_accepted(kind: str, content_type: str) -> None:
    assert check_media_type(kind, content_type) == JSON


@pytest.mark.parametrize("kind", ["htx", "pingpong", "trx-energy"])
@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.x+json",
        "application/problem+json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ],
)
def test_only_the_named_media_types_in_utf_8_are_accepted(kind: str, content_type: str) -> None:
    with pytest.raises(UnsupportedMedia):
        check_media_type(kind, content_type)


def test_form_is_accepted_for_htx_only() -> None:
    assert check_media_type("htx", "application/x-www-form-urlencoded") == FORM
    assert check_media_type("htx", "application/x-www-form-urlencoded; charset=utf-8") == FORM
    for kind in ("pingpong", "trx-energy"):
        with pytest.raises(UnsupportedMedia):
            check_media_type(kind, "application/x-www-form-urlencoded")


@pytest.mark.parametrize("kind", ["htx", "pingpong", "trx-energy"])
@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "multipart/form-data", "text/json", "application/xml"]
)
def test_other_or_missing_media_types_are_unsupported(kind: str, content_type: str | None) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        check_media_type(kind, content_type)
    assert status_of(info.value) == 415


# ---------------------------------------------------------------- htx


def test_htx_fixture_is_an_order_filled_event() -> None:
    event = parse_event("htx", raw_fixture("htx_order_filled.json"), JSON)
    assert event.kind == "htx"
    assert event.event == "order.filled"
    assert event.raw_type == "filled"
    assert event.symbol == "btcusdt"
    assert event.account_id == "100009"
    order = event.payload
    assert order.order_id == "59378"  # type: ignore[attr-defined]
    assert order.filled_amount == Decimal("0.03")  # type: ignore[attr-defined]
    assert order.filled_cash_amount == Decimal("1260")  # type: ignore[attr-defined]
    assert order.filled_fees == Decimal("0.00006")  # type: ignore[attr-defined]
    assert [t.trade_amount for t in order.trade] == [  # type: ignore[attr-defined]
        Decimal("0.01"),
        Decimal("0.02"),
    ]


@pytest.mark.parametrize(
    ("state", "canonical"),
    [
        ("submitted", "order.submitted"),
        ("partial-filled", "order.partial_filled"),
        ("filled", "order.filled"),
        ("partial-canceled", "order.partial_canceled"),
        ("canceled", "order.canceled"),
        ("rejected", "order.rejected"),
        ("FILLED", "order.filled"),
    ],
)
def test_htx_states_map_to_canonical_events(state: str, canonical: str) -> None:
    data = fixture("htx_order_filled.json") | {"state": state}
    assert parse("htx", data).event == canonical


def test_htx_unknown_state_is_unhandled() -> None:
    event = parse("htx", fixture("htx_order_filled.json") | {"state": "created"})
    assert event.event is None
    assert event.raw_type == "created"


def htx_key(**changes: Any) -> str:
    return parse("htx", fixture("htx_order_filled.json") | changes).idempotency_key


def test_htx_key_normalises_the_filled_amount() -> None:
    key = htx_key()
    assert key == htx_key(**{"filled-amount": "0.03"})
    assert key == htx_key(**{"filled-amount": "0.030"})
    assert "59378" in key
    as_number = raw_fixture("htx_order_filled.json").replace(
        b'"filled-amount": "0.0300000000"', b'"filled-amount": 0.0300'
    )
    assert b'"filled-amount": 0.0300,' in as_number
    assert parse_event("htx", as_number, JSON).idempotency_key == key


def test_htx_key_ignores_fields_outside_order_state_and_fill() -> None:
    key = htx_key()
    assert key == htx_key(**{"filled-cash-amount": "999", "filled-fees": "1", "trade": []})
    assert key == htx_key(**{"client-order-id": "other", "created-at": 1})


def test_htx_key_separates_partial_fills_states_and_orders() -> None:
    keys = {
        htx_key(),
        htx_key(**{"filled-amount": "0.01", "state": "partial-filled"}),
        htx_key(**{"filled-amount": "0.02", "state": "partial-filled"}),
        htx_key(**{"state": "partial-canceled"}),
        htx_key(**{"order-id": 59379}),
        htx_key(**{"order-id": "5937"}),
    }
    assert len(keys) == 6


def test_htx_string_and_integer_order_ids_are_the_same_order() -> None:
    assert htx_key(**{"order-id": 59378}) == htx_key(**{"order-id": "59378"})


def test_htx_amounts_are_decimal_from_json_numbers_and_strings() -> None:
    body = (
        b'{"order-id": 1, "symbol": "ethusdt", "type": "sell-market", "state": "filled",'
        b' "filled-amount": 0.1, "filled-cash-amount": "250.10", "filled-fees": 0.2501,'
        b' "price": 2501}'
    )
    order = parse_event("htx", body, JSON).payload
    for name, expected in [
        ("filled_amount", Decimal("0.1")),
        ("filled_cash_amount", Decimal("250.10")),
        ("filled_fees", Decimal("0.2501")),
        ("price", Decimal("2501")),
    ]:
        value = getattr(order, name)
        assert type(value) is Decimal, name
        assert value == expected, name


def htx_form_fields() -> dict[str, str]:
    data = fixture("htx_order_filled.json")
    fields = {k: str(v) for k, v in data.items() if v is not None and k != "trade"}
    fields["trade"] = json.dumps(data["trade"])
    return fields


def test_htx_form_encoded_body_matches_the_json_one() -> None:
    form = parse_event("htx", urlencode(htx_form_fields()).encode(), FORM)
    as_json = parse_event("htx", raw_fixture("htx_order_filled.json"), JSON)
    assert form.event == "order.filled"
    assert form.idempotency_key == as_json.idempotency_key
    order = form.payload
    assert order.created_at == 1704440609000  # type: ignore[attr-defined]
    assert [t.trade_id for t in order.trade] == ["100001", "100002"]  # type: ignore[attr-defined]
    assert [t.trade_price for t in order.trade] == [  # type: ignore[attr-defined]
        Decimal("42000.00"),
        Decimal("42000.00"),
    ]
    assert type(order.trade[0].trade_price) is Decimal  # type: ignore[attr-defined]


def test_htx_form_without_trade_and_with_empty_trade() -> None:
    fields = htx_form_fields()
    del fields["trade"]
    assert parse_event("htx", urlencode(fields).encode(), FORM).payload.trade == []  # type: ignore[attr-defined]
    fields["trade"] = ""
    assert parse_event("htx", urlencode(fields).encode(), FORM).payload.trade == []  # type: ignore[attr-defined]


def test_htx_form_duplicate_fields_are_bad_request() -> None:
    body = urlencode(htx_form_fields()) + "&state=canceled"
    with pytest.raises(BadRequest, match="state"):
        parse_event("htx", body.encode(), FORM)


@pytest.mark.parametrize(
    "body",
    [b"a=1&b", b"\xff=1", b"trade=%5B1%2C", b"&".join([b"f%d=1" % i for i in range(300)])],
    ids=["no-equals", "not-utf8", "trade-not-json", "too-many-fields"],
)
def test_htx_form_garbage_is_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_event("htx", body, FORM)


def test_htx_form_missing_fields_is_validation_failed() -> None:
    with pytest.raises(ValidationFailed):
        parse_event("htx", b"", FORM)


# ---------------------------------------------------------------- pingpong


def test_pingpong_settle_fixture() -> None:
    event = parse_event("pingpong", raw_fixture("pingpong_position_settle.json"), JSON)
    assert event.event == "contract.settled"
    assert event.raw_type == "positionSettle"
    assert event.idempotency_key == "P24010816531715000059"
    payload = event.payload.payload  # type: ignore[attr-defined]
    for name, expected in [
        ("buy_amount", Decimal("3645.95")),
        ("sell_amount", Decimal("8667.49")),
        ("price", Decimal("2.37729")),
        ("price2", Decimal("0.420647")),
    ]:
        value = getattr(payload, name)
        assert type(value) is Decimal, name
        assert value == expected, name
    assert payload.buy_currency == "CNH"
    assert payload.value_date == "2024-01-05"


def test_pingpong_amounts_from_json_strings_are_decimal_too() -> None:
    data = fixture("pingpong_position_settle.json")
    data["payload"] |= {"buy_amount": "3645.95", "sell_amount": "8667.490"}
    payload = parse("pingpong", data).payload.payload  # type: ignore[attr-defined]
    assert type(payload.buy_amount) is Decimal
    assert payload.buy_amount == Decimal("3645.95")
    assert payload.sell_amount == Decimal("8667.49")


def test_pingpong_position_extend_is_accepted_but_unhandled() -> None:
    event = parse_event("pingpong", raw_fixture("pingpong_position_extend.json"), JSON)
    assert event.event is None
    assert event.raw_type == "positionExtend"
    assert event.idempotency_key == "P24010816531715000058"


@pytest.mark.parametrize(
    ("event_type", "canonical"),
    [
        ("positionCreate", "contract.created"),
        ("positionCancel", "contract.canceled"),
        ("positionSettle", "contract.settled"),
    ],
)
def test_pingpong_known_types(event_type: str, canonical: str) -> None:
    data = fixture("pingpong_position_settle.json") | {"event_type": event_type}
    assert parse("pingpong", data).event == canonical


def test_pingpong_key_is_the_msg_id_only() -> None:
    data = fixture("pingpong_position_settle.json")
    other_payload = data | {"payload": data["payload"] | {"buy_amount": 1}}
    assert (
        parse("pingpong", data).idempotency_key == parse("pingpong", other_payload).idempotency_key
    )
    assert parse("pingpong", data | {"msg_id": "P2"}).idempotency_key == "P2"


# ---------------------------------------------------------------- trx-energy


def test_trx_order_fixture_with_status_minus_one_is_rental_failed() -> None:
    event = parse_event("trx-energy", raw_fixture("trx_order.json"), JSON)
    assert event.event == "rental.failed"
    assert event.payload.status == -1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "canonical"), [(0, "rental.created"), (1, "rental.delegated"), (-1, "rental.failed")]
)
def test_trx_order_statuses(status: int, canonical: str) -> None:
    assert parse("trx-energy", fixture("trx_order.json") | {"status": status}).event == canonical


def test_trx_order_key_is_id_and_status() -> None:
    def key(**changes: Any) -> str:
        return parse("trx-energy", fixture("trx_order.json") | changes).idempotency_key

    assert key() == key(timeStamp=1, times=3, source="API")
    assert key() == key(id="5")
    assert len({key(), key(status=0), key(status=1), key(id=6)}) == 4


def test_trx_deposit_fixture() -> None:
    event = parse_event("trx-energy", raw_fixture("trx_deposit.json"), JSON)
    assert event.event == "deposit.received"
    assert event.payload.amount == 1_000_000_000  # type: ignore[attr-defined]
    assert TX_HASH in event.idempotency_key


def test_trx_deposit_key_is_the_tx_hash() -> None:
    def key(**changes: Any) -> str:
        return parse("trx-energy", fixture("trx_deposit.json") | changes).idempotency_key

    assert key() == key(id=99, createdAt="2030-01-01 00:00:00")
    assert key() == key(txHash=TX_HASH.upper())
    assert key() != key(txHash="0" * 64)


def test_trx_unknown_type_is_unhandled() -> None:
    event = parse("trx-energy", {"type": "withdrawal", "id": 7})
    assert event.event is None
    assert event.raw_type == "withdrawal"
    assert event.idempotency_key
    assert (
        event.idempotency_key
        != parse("trx-energy", {"type": "withdrawal", "id": 8}).idempotency_key
    )


def test_trx_unknown_type_without_id_falls_back_to_the_body_digest() -> None:
    first = parse_event("trx-energy", b'{"type": "ping"}', JSON)
    again = parse_event("trx-energy", b'{"type": "ping"}', JSON)
    other = parse_event("trx-energy", b'{"type": "ping", "n": 1}', JSON)
    assert first.idempotency_key.startswith("sha256:")
    assert first.idempotency_key == again.idempotency_key
    assert first.idempotency_key != other.idempotency_key


# ---------------------------------------------------------------- decoding errors


@pytest.mark.parametrize("kind", ["htx", "pingpong", "trx-energy"])
@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"12", b"{", b"\xff"])
def test_non_object_or_undecodable_json_is_bad_request(kind: str, body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_event(kind, body, JSON)


# ---------------------------------------------------------------- 422 detail


def test_htx_missing_order_id() -> None:
    data = fixture("htx_order_filled.json")
    del data["order-id"]
    detail = failure("htx", data)
    assert locs(detail) == [["body", "order-id"]]
    assert detail[0]["type"] == "missing"


def test_htx_negative_filled_amount() -> None:
    detail = failure("htx", fixture("htx_order_filled.json") | {"filled-amount": "-0.01"})
    assert locs(detail) == [["body", "filled-amount"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("symbol", 123),
        ("symbol", "BTC/USDT"),
        ("order-id", [1]),
        ("order-id", True),
        ("amount", True),
        ("amount", {"value": 1}),
        ("type", "limit"),
        ("created-at", "soon"),
        ("created-at", 1.5),
        ("trade", "not-a-list"),
    ],
)
def test_htx_wrong_types(field: str, value: Any) -> None:
    data = fixture("htx_order_filled.json") | {field: value}
    detail = failure("htx", data)
    assert locs(detail) == [["body", field]]


@pytest.mark.parametrize("amount", ["1e5", "1E-3", "1.5e2", "NaN", "Infinity", "0x10"])
def test_htx_exponent_or_float_like_amount_strings(amount: str) -> None:
    detail = failure("htx", fixture("htx_order_filled.json") | {"amount": amount})
    assert locs(detail) == [["body", "amount"]]
    assert detail[0]["input"] == amount


def test_htx_bad_trade_entry_is_located_inside_the_list() -> None:
    data = fixture("htx_order_filled.json")
    data["trade"][1]["trade-amount"] = "0"
    detail = failure("htx", data)
    assert locs(detail) == [["body", "trade", 1, "trade-amount"]]


def test_pingpong_settle_without_payload() -> None:
    data = fixture("pingpong_position_settle.json")
    del data["payload"]
    detail = failure("pingpong", data)
    assert locs(detail) == [["body"]]
    assert "payload" in detail[0]["msg"]


def test_pingpong_settle_without_amounts() -> None:
    data = fixture("pingpong_position_settle.json")
    del data["payload"]["buy_amount"]
    detail = failure("pingpong", data)
    assert "buy_amount" in detail[0]["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("buy_amount", "3.6e3"),
        ("buy_amount", -1),
        ("buy_currency", "c n h"),
        ("value_date", "05/01/2024"),
        ("pay_way", "cash"),
        ("open_time", "yesterday"),
    ],
)
def test_pingpong_bad_payload_fields(field: str, value: Any) -> None:
    data = fixture("pingpong_position_settle.json")
    data["payload"][field] = value
    assert locs(failure("pingpong", data)) == [["body", "payload", field]]


def test_pingpong_missing_msg_id() -> None:
    data = fixture("pingpong_position_settle.json")
    del data["msg_id"]
    assert ["body", "msg_id"] in locs(failure("pingpong", data))


@pytest.mark.parametrize(
    "address",
    [
        "TJqiMSSmRtm4LvXrYBWysz9DnNrFQDaBv",  # one character short
        "AJqiMSSmRtm4LvXrYBWysz9DnNrFQDaBv9",  # not starting with T
        "TJqiMSSmRtm4LvXrYBWysz9DnNrFQDaBv0",  # 0 is not base58
        "0x52908400098527886E0F7030069857D2E4169EE7",
    ],
)
def test_trx_bad_tron_address(address: str) -> None:
    detail = failure("trx-energy", fixture("trx_order.json") | {"receiverAddress": address})
    assert locs(detail) == [["body", "receiverAddress"]]


def test_trx_deposit_bad_addresses_and_hash() -> None:
    data = fixture("trx_deposit.json") | {"fromAddress": "nope", "txHash": "abc"}
    assert sorted(locs(failure("trx-energy", data))) == [
        ["body", "fromAddress"],
        ["body", "txHash"],
    ]


@pytest.mark.parametrize("amount", [0, -5, "1e9", 1.5, 10**19])
def test_trx_deposit_bad_amounts(amount: Any) -> None:
    data = fixture("trx_deposit.json") | {"amount": amount}
    assert locs(failure("trx-energy", data)) == [["body", "amount"]]


def test_trx_missing_type() -> None:
    detail = failure("trx-energy", {"id": 5})
    assert locs(detail) == [["body", "type"]]


@pytest.mark.timeout(10)
def test_huge_exponent_integer_fields_are_refused_without_expanding_them() -> None:
    # 1E+60 parses (a plausible magnitude) but is no 64-bit integer: refused by the schema.
    body = raw_fixture("trx_deposit.json").replace(b"1000000000", b"1E+60")
    with pytest.raises(ValidationFailed):
        parse_event("trx-energy", body, JSON)
    # Expanding 1E+999999999 into an int would never finish: the parser refuses it first.
    body = raw_fixture("trx_deposit.json").replace(b"1000000000", b"1E+999999999")
    with pytest.raises(BadRequest, match="out of range"):
        parse_event("trx-energy", body, JSON)
