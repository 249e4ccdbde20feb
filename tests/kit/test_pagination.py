"""Opaque keyset cursors and page splitting."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from peakshop.errors import InvalidInput
from peakshop.kit.pagination import decode_cursor, encode_cursor, page_of


@dataclass
class Row:
    id: int


@pytest.mark.parametrize("last_id", [1, 2, 42, 2**31, 2**63 - 1])
def test_cursor_round_trip_and_is_url_safe(last_id: int) -> None:
    cursor = encode_cursor(last_id)
    assert decode_cursor(cursor) == last_id
    assert cursor.replace("-", "").replace("_", "").isalnum()  # no '=', '+', '/'


@pytest.mark.parametrize("cursor", [None, ""])
def test_no_cursor_means_the_first_page(cursor: str | None) -> None:
    assert decode_cursor(cursor) is None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "a", _b64("garbage"), _b64("[]"), _b64('["1"]'), _b64("[1.5]"), _b64("{}"),
     _b64("[0]"), _b64("[-3]"), _b64(f"[{2**63}]"), _b64(f"[{10**30}]"), _b64("null")],
)  # fmt: skip
def test_malformed_cursor_is_invalid_input_naming_the_field(cursor: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decode_cursor(cursor)
    assert raised.value.field == "cursor"
    assert raised.value.status_code == 400


def test_page_of_splits_the_extra_row_into_a_cursor() -> None:
    rows = [Row(id) for id in (9, 7, 5, 3)]
    items, cursor = page_of(rows, limit=3)
    assert items == rows[:3]
    assert cursor is not None and decode_cursor(cursor) == 5
    items, cursor = page_of(rows[:3], limit=3)
    assert (items, cursor) == (rows[:3], None)  # exactly a page: no next page
    assert page_of([], limit=3) == ([], None)
