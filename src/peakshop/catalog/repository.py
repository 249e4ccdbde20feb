"""SQL of sellers, categories and products (the listing is in listing.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.catalog.models import categories, products, sellers
from peakshop.orders.models import order_items


async def _one(conn: AsyncConnection, query: Any) -> RowMapping | None:
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


# --- sellers -----------------------------------------------------------------------------------


async def insert_seller(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    row = await _one(conn, sa.insert(sellers).values(**values).returning(sellers))
    assert row is not None
    return row


async def get_seller(conn: AsyncConnection, seller_id: int) -> RowMapping | None:
    return await _one(conn, sa.select(sellers).where(sellers.c.id == seller_id))


async def update_seller(
    conn: AsyncConnection, seller_id: int, values: dict[str, Any]
) -> RowMapping | None:
    statement = sa.update(sellers).where(sellers.c.id == seller_id).values(**values)
    return await _one(conn, statement.returning(sellers))


async def delete_seller(conn: AsyncConnection, seller_id: int) -> bool:
    result = await conn.execute(sa.delete(sellers).where(sellers.c.id == seller_id))
    return bool(result.rowcount)


async def list_sellers(
    conn: AsyncConnection, *, before_id: int | None, limit: int
) -> Sequence[RowMapping]:
    query = sa.select(sellers).order_by(sellers.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(sellers.c.id < sa.literal(before_id, sa.BigInteger))
    return (await conn.execute(query)).mappings().all()


async def sellers_by_id(conn: AsyncConnection, ids: set[int]) -> dict[int, RowMapping]:
    if not ids:
        return {}
    query = sa.select(sellers.c.id, sellers.c.name).where(sellers.c.id.in_(sorted(ids)))
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


# --- categories --------------------------------------------------------------------------------


async def insert_category(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    row = await _one(conn, sa.insert(categories).values(**values).returning(categories))
    assert row is not None
    return row


async def get_category(conn: AsyncConnection, category_id: int) -> RowMapping | None:
    return await _one(conn, sa.select(categories).where(categories.c.id == category_id))


async def update_category(
    conn: AsyncConnection, category_id: int, values: dict[str, Any]
) -> RowMapping | None:
    statement = sa.update(categories).where(categories.c.id == category_id).values(**values)
    return await _one(conn, statement.returning(categories))


async def move_subtree(conn: AsyncConnection, old_path: str, new_path: str) -> None:
    """Rewrite the paths of every descendant of a moved category (its own path included)."""
    await conn.execute(
        sa.update(categories)
        .where(categories.c.path.like(old_path.replace("%", r"\%") + "%", escape="\\"))
        .values(path=sa.literal(new_path) + sa.func.substr(categories.c.path, len(old_path) + 1))
    )


async def delete_category(conn: AsyncConnection, category_id: int) -> bool:
    result = await conn.execute(sa.delete(categories).where(categories.c.id == category_id))
    return bool(result.rowcount)


async def has_children(conn: AsyncConnection, category_id: int) -> bool:
    query = sa.select(categories.c.id).where(categories.c.parent_id == category_id).limit(1)
    return (await conn.execute(query)).first() is not None


async def all_categories(conn: AsyncConnection) -> Sequence[RowMapping]:
    query = sa.select(categories).order_by(categories.c.path)
    return (await conn.execute(query)).mappings().all()


async def categories_by_id(conn: AsyncConnection, ids: set[int]) -> dict[int, RowMapping]:
    if not ids:
        return {}
    query = sa.select(categories.c.id, categories.c.name, categories.c.path).where(
        categories.c.id.in_(sorted(ids))
    )
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


# --- products ----------------------------------------------------------------------------------


async def insert_product(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    row = await _one(conn, sa.insert(products).values(**values).returning(products))
    assert row is not None
    return row


async def get_product(conn: AsyncConnection, product_id: int) -> RowMapping | None:
    return await _one(conn, sa.select(products).where(products.c.id == product_id))


async def update_product(
    conn: AsyncConnection, product_id: int, values: dict[str, Any]
) -> RowMapping | None:
    statement = sa.update(products).where(products.c.id == product_id).values(**values)
    return await _one(conn, statement.returning(products))


async def references(conn: AsyncConnection, column: sa.Column[Any], ident: int) -> bool:
    """Whether any product points at this seller or category."""
    query = sa.select(products.c.id).where(column == ident).limit(1)
    return (await conn.execute(query)).first() is not None


async def is_ordered(conn: AsyncConnection, product_id: int) -> bool:
    query = sa.select(order_items.c.order_id).where(order_items.c.product_id == product_id)
    return (await conn.execute(query.limit(1))).first() is not None
