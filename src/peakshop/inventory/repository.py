"""SQL of inventory and flash sales. Every stock movement is one conditional UPDATE: it
applies in full or not at all, and the CHECK constraints stand behind it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.db import upsert_insert
from peakshop.inventory.models import flash_sale_buyers, flash_sales, products

# --- products ---------------------------------------------------------------------------------


async def insert_product(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    result = await conn.execute(sa.insert(products).values(**values).returning(products))
    row: RowMapping = result.mappings().one()
    return row


async def get_product(conn: AsyncConnection, product_id: int) -> RowMapping | None:
    query = sa.select(products).where(products.c.id == product_id)
    return (await conn.execute(query)).mappings().first()


async def get_products(conn: AsyncConnection, product_ids: Sequence[int]) -> dict[int, RowMapping]:
    query = sa.select(products).where(products.c.id.in_(list(product_ids)))
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


async def list_products(
    conn: AsyncConnection, *, before_id: int | None, limit: int
) -> Sequence[RowMapping]:
    query = sa.select(products).order_by(products.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(products.c.id < sa.literal(before_id, sa.BigInteger))
    return (await conn.execute(query)).mappings().all()


async def update_product(
    conn: AsyncConnection, product_id: int, values: dict[str, Any], *, stock: int | None
) -> RowMapping | None:
    """Set fields; ``stock`` sets ``available``, moving ``initial_stock`` by the same amount
    so the ledger still adds up."""
    if stock is not None:
        values = {
            **values,
            "initial_stock": products.c.initial_stock + (stock - products.c.available),
            "available": stock,
        }
    result = await conn.execute(
        sa.update(products).where(products.c.id == product_id).values(**values).returning(products)
    )
    row: RowMapping | None = result.mappings().first()
    return row


async def reserve_product(conn: AsyncConnection, product_id: int, quantity: int) -> bool:
    result = await conn.execute(
        sa.update(products)
        .where(products.c.id == product_id, products.c.available >= quantity)
        .values(available=products.c.available - quantity, reserved=products.c.reserved + quantity)
    )
    return bool(result.rowcount)


def confirm_product(conn: sa.Connection, product_id: int, quantity: int) -> None:
    conn.execute(
        sa.update(products)
        .where(products.c.id == product_id)
        .values(reserved=products.c.reserved - quantity, sold=products.c.sold + quantity)
    )


async def release_product(
    conn: AsyncConnection, product_id: int, quantity: int, *, from_sold: bool
) -> None:
    column = products.c.sold if from_sold else products.c.reserved
    await conn.execute(
        sa.update(products)
        .where(products.c.id == product_id)
        .values({column: column - quantity, products.c.available: products.c.available + quantity})
    )


async def allocate_to_sale(conn: AsyncConnection, product_id: int, quantity: int) -> bool:
    result = await conn.execute(
        sa.update(products)
        .where(products.c.id == product_id, products.c.available >= quantity)
        .values(
            available=products.c.available - quantity, allocated=products.c.allocated + quantity
        )
    )
    return bool(result.rowcount)


async def stock_totals(conn: AsyncConnection) -> RowMapping:
    query = sa.select(
        sa.func.count().label("products"),
        *(
            sa.func.coalesce(sa.func.sum(column), 0).label(column.name)
            for column in (
                products.c.initial_stock,
                products.c.available,
                products.c.reserved,
                products.c.sold,
                products.c.allocated,
            )
        ),
    )
    return (await conn.execute(query)).mappings().one()


async def low_stock(
    conn: AsyncConnection, *, threshold: int, limit: int
) -> tuple[int, Sequence[RowMapping]]:
    where = products.c.available <= threshold
    count = (await conn.execute(sa.select(sa.func.count()).where(where))).scalar_one()
    rows = await conn.execute(
        sa.select(products.c.id, products.c.name, products.c.available)
        .where(where)
        .order_by(products.c.available, products.c.id)
        .limit(limit)
    )
    return int(count), rows.mappings().all()


# --- flash sales ------------------------------------------------------------------------------


async def insert_sale(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    result = await conn.execute(sa.insert(flash_sales).values(**values).returning(flash_sales))
    row: RowMapping = result.mappings().one()
    return row


async def get_sale(conn: AsyncConnection, sale_id: int) -> RowMapping | None:
    query = sa.select(flash_sales).where(flash_sales.c.id == sale_id)
    return (await conn.execute(query)).mappings().first()


async def list_sales(
    conn: AsyncConnection, *, before_id: int | None, limit: int
) -> Sequence[RowMapping]:
    query = sa.select(flash_sales).order_by(flash_sales.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(flash_sales.c.id < sa.literal(before_id, sa.BigInteger))
    return (await conn.execute(query)).mappings().all()


async def open_sales(conn: AsyncConnection, *, ends_after: datetime) -> Sequence[RowMapping]:
    query = sa.select(flash_sales).where(flash_sales.c.ends_at > ends_after)
    return (await conn.execute(query)).mappings().all()


async def active_sale_stock(
    conn: AsyncConnection, *, now: datetime, sale_ids: Sequence[int] | None = None, limit: int = 50
) -> list[tuple[int, int, int, int]]:
    """(id, remaining, reserved, sold) of the sales whose window is open now (of ``sale_ids``
    when given), by id; for the monitor and the live inventory events."""
    query = (
        sa.select(
            flash_sales.c.id, flash_sales.c.remaining, flash_sales.c.reserved, flash_sales.c.sold
        )
        .where(flash_sales.c.starts_at <= now, flash_sales.c.ends_at > now)
        .order_by(flash_sales.c.id)
        .limit(limit)
    )
    if sale_ids is not None:
        query = query.where(flash_sales.c.id.in_(list(sale_ids)))
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in await conn.execute(query)]


async def sales_of_products(
    conn: AsyncConnection, product_ids: Sequence[int], *, now: datetime
) -> set[int]:
    """Ids of the products with a sale running now."""
    query = sa.select(flash_sales.c.product_id).where(
        flash_sales.c.product_id.in_(list(product_ids)),
        flash_sales.c.starts_at <= now,
        flash_sales.c.ends_at > now,
    )
    return {row[0] for row in await conn.execute(query)}


def reserve_in_sale(
    conn: sa.Connection, sale_id: int, user_id: str, quantity: int, *, per_user_limit: int
) -> str | None:
    """Take ``quantity`` units for ``user_id``: None when taken, else the reason (sold_out,
    user_limit_reached). The caller's transaction rolls back on a refusal."""
    taken = conn.execute(
        sa.update(flash_sales)
        .where(flash_sales.c.id == sale_id, flash_sales.c.remaining >= quantity)
        .values(
            remaining=flash_sales.c.remaining - quantity,
            reserved=flash_sales.c.reserved + quantity,
        )
    )
    if not taken.rowcount:
        return "sold_out"
    insert = upsert_insert(conn, flash_sale_buyers).values(
        sale_id=sale_id, user_id=user_id, quantity=quantity
    )
    held = conn.execute(
        insert.on_conflict_do_update(
            index_elements=["sale_id", "user_id"],
            set_={"quantity": flash_sale_buyers.c.quantity + quantity},
            where=flash_sale_buyers.c.quantity + quantity <= per_user_limit,
        )
    )
    if not held.rowcount or quantity > per_user_limit:
        return "user_limit_reached"
    return None


def take_from_sale(conn: sa.Connection, sale_id: int, units: int) -> bool:
    """Reserve ``units`` of a sale in one statement, if it has them."""
    taken = conn.execute(
        sa.update(flash_sales)
        .where(flash_sales.c.id == sale_id, flash_sales.c.remaining >= units)
        .values(remaining=flash_sales.c.remaining - units, reserved=flash_sales.c.reserved + units)
    )
    return bool(taken.rowcount)


def hold_for_buyers(conn: sa.Connection, holds: list[tuple[int, str, int, int]]) -> int:
    """Add (sale, user, units, cap) holds, each only if the buyer stays within the cap;
    the count of holds taken. One statement per sale."""
    by_sale: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for sale_id, user_id, units, cap in holds:
        by_sale.setdefault((sale_id, cap), []).append(
            {"sale_id": sale_id, "user_id": user_id, "quantity": units}
        )
    taken = 0
    for (_, cap), rows in by_sale.items():
        if any(row["quantity"] > cap for row in rows):
            return 0
        insert = upsert_insert(conn, flash_sale_buyers)
        statement = insert.on_conflict_do_update(
            index_elements=["sale_id", "user_id"],
            set_={"quantity": flash_sale_buyers.c.quantity + insert.excluded.quantity},
            where=flash_sale_buyers.c.quantity + insert.excluded.quantity <= cap,
        ).returning(flash_sale_buyers.c.user_id)
        taken += len((conn.execute(statement, rows)).all())
    return taken


def confirm_in_sale(conn: sa.Connection, sale_id: int, quantity: int) -> None:
    conn.execute(
        sa.update(flash_sales)
        .where(flash_sales.c.id == sale_id)
        .values(reserved=flash_sales.c.reserved - quantity, sold=flash_sales.c.sold + quantity)
    )


async def release_in_sale(
    conn: AsyncConnection, sale_id: int, user_id: str, quantity: int, *, from_sold: bool
) -> None:
    column = flash_sales.c.sold if from_sold else flash_sales.c.reserved
    await conn.execute(
        sa.update(flash_sales)
        .where(flash_sales.c.id == sale_id)
        .values(
            {column: column - quantity, flash_sales.c.remaining: flash_sales.c.remaining + quantity}
        )
    )
    await conn.execute(
        sa.update(flash_sale_buyers)
        .where(flash_sale_buyers.c.sale_id == sale_id, flash_sale_buyers.c.user_id == user_id)
        .values(quantity=flash_sale_buyers.c.quantity - quantity)
    )


async def sale_buyers(conn: AsyncConnection, sale_id: int) -> list[tuple[str, int]]:
    query = sa.select(flash_sale_buyers.c.user_id, flash_sale_buyers.c.quantity).where(
        flash_sale_buyers.c.sale_id == sale_id, flash_sale_buyers.c.quantity > 0
    )
    return [(user, int(quantity)) for user, quantity in await conn.execute(query)]
