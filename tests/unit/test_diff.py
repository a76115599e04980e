"""The field diff of a conflict: which decoded fields differ, values as exact JSON text."""

from __future__ import annotations

from decimal import Decimal

from app.domain.diff import MAX_FIELDS, MAX_TEXT, field_diff


def test_nested_fields_are_named_by_path_and_missing_sides_are_null() -> None:
    old = {"order-id": 1, "payload": {"status": 0, "legs": [{"px": Decimal("1.50")}]}}
    new = {"order-id": 1, "payload": {"status": 1, "legs": [{"px": Decimal("1.5")}, {}]}}

    assert field_diff(old, new) == {
        "fields": [
            {"field": "payload.legs.0.px", "old": "1.50", "new": "1.5"},  # exact, as written
            {"field": "payload.legs.1", "old": None, "new": "{}"},
            {"field": "payload.status", "old": "0", "new": "1"},
        ]
    }


def test_a_diff_stays_small_whatever_the_bodies() -> None:
    old = {f"f{n:03}": "a" * 1000 for n in range(MAX_FIELDS + 7)}
    new = {name: "b" * 1000 for name in old}

    diff = field_diff(old, new)

    assert len(diff["fields"]) == MAX_FIELDS
    assert diff["more"] == 7
    assert all(len(f["old"]) == MAX_TEXT + 3 for f in diff["fields"])  # cut, with "..."


def test_equal_fields_and_an_unreadable_stored_body_say_so() -> None:
    assert field_diff({"a": 1}, {"a": 1})["fields"] == []
    assert "only in their bytes" in field_diff({"a": 1}, {"a": 1})["note"]
    assert "cannot be compared" in field_diff(None, {"a": 1})["note"]
