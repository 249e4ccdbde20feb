"""SQL of orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.db import Record, upsert_insert
from peakshop.kit import sqlite_driver
from peakshop.kit.sqlite_driver import IN_JSON, json_list
from peakshop.orders.models import order_items, orders


async def insert_order(
    conn: AsyncConnection, values: dict[str, Any], items: list[dict[str, Any]]
) -> None:
    await conn.execute(sa.insert(orders).values(**values))
    await conn.execute(
        sa.insert(order_items), [{**item, "order_id": values["id"]} for item in items]
    )


def insert_order_unless_exists(
    conn: sa.Connection, values: dict[str, Any], items: list[dict[str, Any]]
) -> bool:
    """Insert the order and its items unless an order with its id or its idempotency key
    exists (ON CONFLICT on any unique key); True if inserted."""
    inserted = conn.execute(upsert_insert(conn, orders).values(**values).on_conflict_do_nothing())
    if not inserted.rowcount:
        return False
    conn.execute(sa.insert(order_items), [{**item, "order_id": values["id"]} for item in items])
    return True


def insert_orders_unless_exist(conn: sa.Connection, rows: list[dict[str, Any]]) -> int:
    """Insert many orders (no items), skipping those whose id or key exists; the count
    inserted."""
    statement = upsert_insert(conn, orders).on_conflict_do_nothing().returning(orders.c.id)
    return len((conn.execute(statement, rows)).all())


def insert_items(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(sa.insert(order_items), rows)


def get_order(conn: sa.Connection, order_id: str) -> RowMapping | None:
    return (conn.execute(sa.select(orders).where(orders.c.id == order_id))).mappings().first()


# What the worker's batches and the notifications read of an order: no datetimes, so that
# the SQLite driver's rows (kit/sqlite_driver.py) read the same as Core's.
BATCH_COLUMNS = (
    orders.c.id,
    orders.c.user_id,
    orders.c.kind,
    orders.c.flash_sale_id,
    orders.c.status,
    orders.c.subtotal_cents,
    orders.c.discount_cents,
    orders.c.total_cents,
    orders.c.coupon_code,
)
_BATCH_SQLITE = (
    f"SELECT {', '.join(column.name for column in BATCH_COLUMNS)} FROM orders WHERE id {IN_JSON}"
)
_CONFIRM_SQLITE = (
    "UPDATE orders SET status = 'confirmed', updated_at = ?, failure_reason = NULL"
    f" WHERE id {IN_JSON} AND +status = 'pending' RETURNING id"  # +status: see IN_JSON
)
_stored_time = sqlite_driver.datetime_processor(orders.c.updated_at)
_ITEM_COLUMNS = (
    order_items.c.order_id,
    order_items.c.product_id,
    order_items.c.quantity,
    order_items.c.unit_price_cents,
)
_ITEMS_SQLITE = (
    f"SELECT {', '.join(column.name for column in _ITEM_COLUMNS)} FROM order_items"
    f" WHERE order_id {IN_JSON} ORDER BY product_id"
)


def get_orders(conn: sa.Connection, order_ids: Sequence[str]) -> dict[str, Record]:
    """``BATCH_COLUMNS`` of many orders, by id."""
    if sqlite_driver.usable(conn):
        rows: Sequence[Record] = sqlite_driver.fetch(conn, _BATCH_SQLITE, (json_list(order_ids),))
    else:
        query = sa.select(*BATCH_COLUMNS).where(orders.c.id.in_(list(order_ids)))
        rows = conn.execute(query).mappings().all()
    return {row["id"]: row for row in rows}


def confirm_pending(conn: sa.Connection, order_ids: Sequence[str], *, now: datetime) -> list[str]:
    """pending -> confirmed for many orders at once; the ids that moved."""
    if sqlite_driver.usable(conn):
        parameters = (_stored_time(now), json_list(order_ids))
        return [row[0] for row in sqlite_driver.fetch(conn, _CONFIRM_SQLITE, parameters)]
    result = conn.execute(
        sa.update(orders)
        .where(orders.c.id.in_(list(order_ids)), orders.c.status == "pending")
        .values(status="confirmed", updated_at=now, failure_reason=None)
        .returning(orders.c.id)
    )
    return [row[0] for row in result]


def get_by_idempotency(conn: sa.Connection, scope: str, key: str) -> RowMapping | None:
    query = sa.select(orders).where(
        orders.c.idempotency_scope == scope, orders.c.idempotency_key == key
    )
    return (conn.execute(query)).mappings().first()


def items_of(conn: sa.Connection, order_ids: Sequence[str]) -> dict[str, list[Record]]:
    if sqlite_driver.usable(conn):
        rows: Sequence[Record] = sqlite_driver.fetch(conn, _ITEMS_SQLITE, (json_list(order_ids),))
    else:
        query = (
            sa.select(*_ITEM_COLUMNS)
            .where(order_items.c.order_id.in_(list(order_ids)))
            .order_by(order_items.c.product_id)
        )
        rows = conn.execute(query).mappings().all()
    grouped: dict[str, list[Record]] = {order_id: [] for order_id in order_ids}
    for row in rows:
        grouped[row["order_id"]].append(row)
    return grouped


def move_status(
    conn: sa.Connection,
    order_id: str,
    *,
    from_status: str,
    to_status: str,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """The one way an order changes status: conditional on the status it had, so of two
    racing transitions (a confirmation and an expiry) exactly one happens."""
    values: dict[str, Any] = {"status": to_status, "updated_at": now, "failure_reason": reason}
    result = conn.execute(
        sa.update(orders)
        .where(orders.c.id == order_id, orders.c.status == from_status)
        .values(**values)
    )
    return bool(result.rowcount)


async def list_user_orders(
    conn: AsyncConnection, user_id: str, *, before_seq: int | None, limit: int
) -> Sequence[RowMapping]:
    query = (
        sa.select(orders)
        .where(orders.c.user_id == user_id)
        .order_by(orders.c.seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(orders.c.seq < sa.literal(before_seq, sa.BigInteger))
    return (await conn.execute(query)).mappings().all()


async def overdue_pending(
    conn: AsyncConnection, *, now: datetime, limit: int
) -> Sequence[RowMapping]:
    query = (
        sa.select(orders)
        .where(orders.c.status == "pending", orders.c.pay_by < now)
        .order_by(orders.c.pay_by)
        .limit(limit)
    )
    return (await conn.execute(query)).mappings().all()


async def sale_idempotency(conn: AsyncConnection, sale_id: int) -> dict[str, str]:
    """The admitted orders of a sale as the hot store keeps them: key -> record."""
    query = sa.select(
        orders.c.idempotency_key, orders.c.request_hash, orders.c.id, orders.c.job_id
    ).where(orders.c.flash_sale_id == sale_id)
    return {
        key: admission_record(request_hash, order_id, job_id)
        for key, request_hash, order_id, job_id in await conn.execute(query)
    }


def admission_record(request_hash: str, order_id: str, job_id: str) -> str:
    return f"{request_hash}|{order_id}|{job_id}"


def parse_record(record: str) -> tuple[str, str, str]:
    request_hash, order_id, job_id = record.split("|")
    return request_hash, order_id, job_id


async def counts_by_status(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(sa.select(orders.c.status, sa.func.count()).group_by(orders.c.status))
    return {status: int(count) for status, count in rows}


async def placed_since(conn: AsyncConnection, since: datetime) -> int:
    query = sa.select(sa.func.count()).where(orders.c.created_at >= since)
    return int((await conn.execute(query)).scalar_one())


async def oldest_pending(conn: AsyncConnection) -> datetime | None:
    query = sa.select(sa.func.min(orders.c.created_at)).where(orders.c.status == "pending")
    value: datetime | None = (await conn.execute(query)).scalar()
    return value
