"""Opaque cursors for keyset pagination (newest first by integer id)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Protocol, TypeVar

import msgspec

from peakshop.errors import InvalidInput


class HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=HasId)
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class _Cursor(msgspec.Struct, array_like=True):
    # A forged cursor must not reach the database as an id no integer column can hold.
    last_id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


def encode_cursor(last_id: int) -> str:
    raw = msgspec.json.encode(_Cursor(last_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded), type=_Cursor).last_id
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("cursor is malformed", field="cursor") from exc


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def page_of(rows: Sequence[R], *, limit: int) -> tuple[list[R], str | None]:
    """Split ``limit + 1`` fetched rows into a page and the cursor of the next one (the extra
    row only signals that there is a next page)."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit and items else None
    return items, next_cursor
