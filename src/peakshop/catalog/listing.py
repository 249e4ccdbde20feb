"""The product listing: filters, sort orders, keyset (cursor) and offset pagination.

Cursor pages are keyset pages: a page starts strictly after the last row of the previous
one in the sort order (price, then id), so rows inserted meanwhile never shift a page and
no row is served twice or skipped; the cost of page 1,000 is the cost of page 1. A cursor
carries a digest of the filters and sort it was made for and is refused with others.
Offset pages (``page``) also give the total; their cost grows with the page number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from peakshop.catalog.models import categories, products, sellers
from peakshop.errors import InvalidInput

MAX_PAGE_SIZE = 100
MAX_OFFSET_PAGE = 10_000


@dataclass(frozen=True, kw_only=True)
class Filters:
    category_id: int | None = None
    seller_id: int | None = None
    status: str = "active"
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    text: str | None = None
    sort: str = "newest"

    def digest(self) -> str:
        """Short fingerprint of the filters and sort, carried by cursors."""
        raw = msgspec.json.encode(
            [
                self.category_id,
                self.seller_id,
                self.status,
                self.min_price_cents,
                self.max_price_cents,
                self.text,
                self.sort,
            ]
        )
        return hashlib.blake2b(raw, digest_size=6).hexdigest()


class _Cursor(msgspec.Struct, array_like=True):
    digest: str
    price_cents: int | None
    last_id: int


def encode_cursor(filters: Filters, row: RowMapping) -> str:
    price = row["price_cents"] if filters.sort != "newest" else None
    raw = msgspec.json.encode(_Cursor(filters.digest(), price, row["id"]))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, filters: Filters) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("cursor is malformed", field="cursor") from exc
    if decoded.digest != filters.digest():
        raise InvalidInput(
            "cursor belongs to other filters or another sort: start again without it",
            field="cursor",
        )
    if not 1 <= decoded.last_id < 2**63 or (
        decoded.price_cents is not None and not 0 <= decoded.price_cents < 2**63
    ):
        raise InvalidInput("cursor is malformed", field="cursor")
    if (decoded.price_cents is None) != (filters.sort == "newest"):
        raise InvalidInput("cursor is malformed", field="cursor")
    return decoded


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# What a product's answer needs, its seller's and category's names joined in: one query per
# page, whatever its size (the "N+1" of fetching them per product cannot happen).
PRODUCT_COLUMNS = (
    products.c.id,
    products.c.name,
    products.c.description,
    products.c.price_cents,
    products.c.currency,
    products.c.status,
    products.c.seller_id,
    products.c.category_id,
    products.c.image_urls,
    products.c.available,
    products.c.created_at,
    products.c.updated_at,
    sellers.c.name.label("seller_name"),
    categories.c.name.label("category_name"),
    categories.c.path.label("category_path"),
)
JOINED = products.outerjoin(sellers, sellers.c.id == products.c.seller_id).outerjoin(
    categories, categories.c.id == products.c.category_id
)


def select_products() -> sa.Select[Any]:
    return sa.select(*PRODUCT_COLUMNS).select_from(JOINED)


# The listing's reads are synchronous: they run through ``Database.run_read`` (on SQLite on
# the event loop's thread within a time budget, else in a thread: kit/sqlite_inline.py).


def category_path(conn: sa.Connection, category_id: int) -> str | None:
    query = sa.select(categories.c.path).where(categories.c.id == category_id)
    return conn.execute(query).scalar()


def _where(filters: Filters, path: str | None) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [products.c.status == filters.status]
    if path is not None:
        subtree = sa.select(categories.c.id).where(
            categories.c.path.like(_escape_like(path) + "%", escape="\\")
        )
        clauses.append(products.c.category_id.in_(subtree))
    if filters.seller_id is not None:
        clauses.append(products.c.seller_id == filters.seller_id)
    if filters.min_price_cents is not None:
        clauses.append(products.c.price_cents >= filters.min_price_cents)
    if filters.max_price_cents is not None:
        clauses.append(products.c.price_cents <= filters.max_price_cents)
    if filters.text:
        pattern = "%" + _escape_like(filters.text.lower()) + "%"
        clauses.append(sa.func.lower(products.c.name).like(pattern, escape="\\"))
    return clauses


def _order(filters: Filters) -> list[Any]:
    if filters.sort == "price_asc":
        return [products.c.price_cents.asc(), products.c.id.asc()]
    if filters.sort == "price_desc":
        return [products.c.price_cents.desc(), products.c.id.desc()]
    return [products.c.id.desc()]


def _after(filters: Filters, cursor: _Cursor) -> sa.ColumnElement[bool]:
    """Strictly after the cursor's row in the sort order. A row-value comparison, not an OR
    of two conditions: both SQLite and PostgreSQL then seek the (status, price, id) index
    to the cursor instead of scanning from the start of the list."""
    last_id = sa.literal(cursor.last_id, sa.BigInteger)
    if filters.sort == "newest":
        return products.c.id < last_id
    key = sa.tuple_(products.c.price_cents, products.c.id)
    bound = sa.tuple_(sa.literal(cursor.price_cents, sa.BigInteger), last_id)
    return key > bound if filters.sort == "price_asc" else key < bound


def cursor_page(
    conn: sa.Connection, filters: Filters, *, path: str | None, cursor: str | None, limit: int
) -> tuple[list[RowMapping], str | None]:
    clauses = _where(filters, path)
    if cursor:
        clauses.append(_after(filters, decode_cursor(cursor, filters)))
    query = select_products().where(*clauses).order_by(*_order(filters)).limit(limit + 1)
    rows = list(conn.execute(query).mappings().all())
    page = rows[:limit]
    next_cursor = encode_cursor(filters, page[-1]) if len(rows) > limit and page else None
    return page, next_cursor


def offset_page(
    conn: sa.Connection, filters: Filters, *, path: str | None, page: int, limit: int
) -> tuple[list[RowMapping], int]:
    if not 1 <= page <= MAX_OFFSET_PAGE:
        raise InvalidInput(f"page must be between 1 and {MAX_OFFSET_PAGE}", field="page")
    clauses = _where(filters, path)
    total = conn.execute(
        sa.select(sa.func.count()).select_from(products).where(*clauses)
    ).scalar_one()
    query = (
        select_products()
        .where(*clauses)
        .order_by(*_order(filters))
        .limit(limit)
        .offset((page - 1) * limit)
    )
    return list(conn.execute(query).mappings().all()), int(total)
