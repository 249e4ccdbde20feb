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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

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


def encode_cursor(filters: Filters, row: Sequence[Any]) -> str:
    """``row``: in ``PRODUCT_COLUMNS`` order."""
    price = row[PRICE_INDEX] if filters.sort != "newest" else None
    raw = msgspec.json.encode(_Cursor(filters.digest(), price, row[ID_INDEX]))
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


ID_INDEX, PRICE_INDEX = 0, 3  # in PRODUCT_COLUMNS


def select_products() -> sa.Select[Any]:
    return sa.select(*PRODUCT_COLUMNS).select_from(JOINED)


# The listing's reads are synchronous: they run through ``Database.run_read`` (on SQLite on
# the event loop's thread within a time budget, else in a thread: kit/sqlite_inline.py).


# A compiled page: its SQL and its positional parameters' names, each with the value it
# takes when the caller gives none.
_Statement = tuple[str, tuple[tuple[str, Any], ...]]
# (shape, dialect's name, driver, paramstyle) -> the statement: a page's shapes are at most
# 2^6 * 3 * 2 (and offset or not) per dialect, so it needs no bound.
_COMPILED: dict[tuple[Any, ...], _Statement] = {}


def product_row(conn: sa.Connection, product_id: int) -> Any:
    """One product's row in ``PRODUCT_COLUMNS`` order, as the driver returns it, or None
    (as the pages, see ``_compile``)."""

    def by_id() -> sa.Select[Any]:
        return select_products().where(products.c.id == sa.bindparam("id", type_=sa.BigInteger))

    return _execute(conn, ("by id",), by_id, {"id": product_id}).first()


def category_path(conn: sa.Connection, category_id: int) -> str | None:
    query = sa.select(categories.c.path).where(categories.c.id == category_id)
    return conn.execute(query).scalar()


class _Shape(NamedTuple):
    """Which parts a page's statement has: one compiled statement per shape and dialect."""

    category: bool
    seller: bool
    min_price: bool
    max_price: bool
    text: bool
    sort: str
    after: bool  # a cursor's bound


def _shape(filters: Filters, path: str | None, *, after: bool) -> _Shape:
    return _Shape(
        path is not None,
        filters.seller_id is not None,
        filters.min_price_cents is not None,
        filters.max_price_cents is not None,
        bool(filters.text),
        filters.sort,
        after,
    )


def _where(shape: _Shape) -> list[sa.ColumnElement[bool]]:
    """The filters as named parameters (their values: ``_values``)."""
    clauses: list[sa.ColumnElement[bool]] = [products.c.status == sa.bindparam("status")]
    if shape.category:
        subtree = sa.select(categories.c.id).where(
            categories.c.path.like(sa.bindparam("subtree", type_=sa.String), escape="\\")
        )
        clauses.append(products.c.category_id.in_(subtree))
    if shape.seller:
        clauses.append(products.c.seller_id == sa.bindparam("seller_id"))
    if shape.min_price:
        clauses.append(products.c.price_cents >= sa.bindparam("min_price"))
    if shape.max_price:
        clauses.append(products.c.price_cents <= sa.bindparam("max_price"))
    if shape.text:
        like = sa.bindparam("text", type_=sa.String)
        clauses.append(sa.func.lower(products.c.name).like(like, escape="\\"))
    if shape.after:
        clauses.append(_after(shape.sort))
    return clauses


def _values(filters: Filters, path: str | None, cursor: _Cursor | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": filters.status,
        "subtree": None if path is None else _escape_like(path) + "%",
        "seller_id": filters.seller_id,
        "min_price": filters.min_price_cents,
        "max_price": filters.max_price_cents,
        "text": "%" + _escape_like(filters.text.lower()) + "%" if filters.text else None,
    }
    if cursor is not None:
        values["after_price"], values["after_id"] = cursor.price_cents, cursor.last_id
    return values


def _order(sort: str) -> list[Any]:
    if sort == "price_asc":
        return [products.c.price_cents.asc(), products.c.id.asc()]
    if sort == "price_desc":
        return [products.c.price_cents.desc(), products.c.id.desc()]
    return [products.c.id.desc()]


def _after(sort: str) -> sa.ColumnElement[bool]:
    """Strictly after the cursor's row in the sort order. A row-value comparison, not an OR
    of two conditions: both SQLite and PostgreSQL then seek the (status, price, id) index
    to the cursor instead of scanning from the start of the list."""
    last_id = sa.bindparam("after_id", type_=sa.BigInteger)
    if sort == "newest":
        return products.c.id < last_id
    key = sa.tuple_(products.c.price_cents, products.c.id)
    bound = sa.tuple_(sa.bindparam("after_price", type_=sa.BigInteger), last_id)
    return key > bound if sort == "price_asc" else key < bound


def _page(shape: _Shape, offset: bool) -> sa.Select[Any]:
    query = (
        select_products()
        .where(*_where(shape))
        .order_by(*_order(shape.sort))
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    return query.offset(sa.bindparam("offset", type_=sa.Integer)) if offset else query


def _compile(query: sa.Select[Any], dialect: Dialect) -> _Statement:
    """The statement's SQL for ``dialect`` and its parameters' names in order.

    Why by hand: a page is read ~500 times a second uncached, and building the statement,
    its cache key and the typed rows cost SQLAlchemy more CPU than SQLite spends on the
    query. The statement is still built by SQLAlchemy, once per shape; the rows come back
    as the driver gives them and ``catalog.service.product_of`` reads both drivers' forms."""
    compiled = query.compile(dialect=dialect)
    # SQLite's LIMIT comes with an OFFSET of its own (an anonymous parameter, 0): such
    # parameters take the value they were compiled with.
    binds = compiled.binds
    return str(compiled), tuple((name, binds[name].value) for name in compiled.positiontup or ())


def _execute(
    conn: sa.Connection,
    shape: tuple[Any, ...],
    build: Callable[[], sa.Select[Any]],
    values: dict[str, Any],
) -> sa.CursorResult[Any]:
    """Run the statement of ``shape`` (built by ``build`` and compiled on first use)."""
    dialect = conn.dialect
    key = (*shape, dialect.name, dialect.driver, dialect.paramstyle)
    statement = _COMPILED.get(key)
    if statement is None:
        statement = _COMPILED[key] = _compile(build(), dialect)
    sql, names = statement
    return conn.exec_driver_sql(sql, tuple(values.get(name, default) for name, default in names))


def _run(conn: sa.Connection, shape: _Shape, values: dict[str, Any], *, offset: bool) -> list[Any]:
    return list(_execute(conn, (shape, offset), lambda: _page(shape, offset), values).all())


def cursor_page(
    conn: sa.Connection, filters: Filters, *, path: str | None, cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    """Rows in ``PRODUCT_COLUMNS`` order, as the driver returns them."""
    after = decode_cursor(cursor, filters) if cursor else None
    values = _values(filters, path, after) | {"limit": limit + 1}
    rows = _run(conn, _shape(filters, path, after=after is not None), values, offset=False)
    page = rows[:limit]
    next_cursor = encode_cursor(filters, page[-1]) if len(rows) > limit and page else None
    return page, next_cursor


def offset_page(
    conn: sa.Connection, filters: Filters, *, path: str | None, page: int, limit: int
) -> tuple[list[Any], int]:
    if not 1 <= page <= MAX_OFFSET_PAGE:
        raise InvalidInput(f"page must be between 1 and {MAX_OFFSET_PAGE}", field="page")
    shape = _shape(filters, path, after=False)
    values = _values(filters, path, None)
    count = sa.select(sa.func.count()).select_from(products).where(*_where(shape))
    total = conn.execute(count, values).scalar_one()
    values |= {"limit": limit, "offset": (page - 1) * limit}
    return _run(conn, shape, values, offset=True), int(total)
