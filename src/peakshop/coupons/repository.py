"""SQL of the coupons domain. Functions take the caller's connection and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.coupons.models import coupon_usage, coupon_user_usage, coupons, validation_logs


async def get_coupon(conn: AsyncConnection, code: str) -> RowMapping | None:
    result = await conn.execute(sa.select(coupons).where(coupons.c.code == code))
    return result.mappings().first()


async def all_coupons(conn: AsyncConnection) -> Sequence[RowMapping]:
    return (await conn.execute(sa.select(coupons))).mappings().all()


async def coupons_fingerprint(conn: AsyncConnection) -> tuple[int, int]:
    """(count, sum of revisions): changes with every created or changed coupon."""
    row = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(coupons.c.revision), 0))
        )
    ).one()
    return int(row[0]), int(row[1])


async def usage_totals(conn: AsyncConnection) -> dict[int, int]:
    rows = await conn.execute(
        sa.select(coupons.c.id, coupons.c.used_count).where(coupons.c.used_count > 0)
    )
    return {coupon_id: used for coupon_id, used in rows}


async def per_user_usage(conn: AsyncConnection) -> list[tuple[int, str, int]]:
    rows = await conn.execute(
        sa.select(
            coupon_user_usage.c.coupon_id, coupon_user_usage.c.user_id, coupon_user_usage.c.count
        )
    )
    return [(c, u, n) for c, u, n in rows]


async def insert_coupon(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    result = await conn.execute(sa.insert(coupons).values(**values).returning(coupons))
    row: RowMapping = result.mappings().one()
    return row


async def update_coupon(
    conn: AsyncConnection, coupon_id: int, values: dict[str, Any]
) -> RowMapping:
    result = await conn.execute(
        sa.update(coupons)
        .where(coupons.c.id == coupon_id)
        .values(**values, revision=coupons.c.revision + 1)
        .returning(coupons)
    )
    row: RowMapping = result.mappings().one()
    return row


async def list_coupons(
    conn: AsyncConnection,
    *,
    state: str | None,
    coupon_type: str | None,
    before_id: int | None,
    limit: int,
    now: datetime,
) -> Sequence[RowMapping]:
    query = sa.select(coupons).order_by(coupons.c.id.desc()).limit(limit)
    if before_id is not None:
        # BIGINT: a cursor past the INTEGER range must compare, not fail to bind (PostgreSQL).
        query = query.where(coupons.c.id < sa.literal(before_id, sa.BigInteger))
    if coupon_type is not None:
        query = query.where(coupons.c.type == coupon_type)
    not_ended = sa.or_(coupons.c.ends_at.is_(None), coupons.c.ends_at > now)
    if state == "inactive":
        query = query.where(coupons.c.status == "inactive")
    elif state == "active":
        query = query.where(coupons.c.status == "active", not_ended)
    elif state == "expired":
        query = query.where(coupons.c.status == "active", sa.not_(not_ended))
    return (await conn.execute(query)).mappings().all()


async def find_usage(conn: AsyncConnection, coupon_id: int, order_id: str) -> RowMapping | None:
    result = await conn.execute(
        sa.select(coupon_usage).where(
            coupon_usage.c.coupon_id == coupon_id, coupon_usage.c.order_id == order_id
        )
    )
    return result.mappings().first()


async def take_global_use(conn: AsyncConnection, coupon_id: int) -> bool:
    """One conditional UPDATE: the row lock makes concurrent takers queue, and the condition is
    re-checked on the latest row, so the global limit can never be passed."""
    result = await conn.execute(
        sa.update(coupons)
        .where(
            coupons.c.id == coupon_id,
            sa.or_(coupons.c.usage_limit.is_(None), coupons.c.used_count < coupons.c.usage_limit),
        )
        .values(used_count=coupons.c.used_count + 1)
    )
    return result.rowcount == 1


async def take_user_use(
    conn: AsyncConnection, coupon_id: int, user_id: str, per_user_limit: int | None
) -> bool:
    """One conditional upsert on the (coupon, user) counter row: no row back means the cap held."""
    if per_user_limit is not None and per_user_limit < 1:
        return False
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(coupon_user_usage)
        .values(coupon_id=coupon_id, user_id=user_id, count=1)
        .on_conflict_do_update(
            index_elements=[coupon_user_usage.c.coupon_id, coupon_user_usage.c.user_id],
            set_={"count": coupon_user_usage.c.count + 1},
            where=(coupon_user_usage.c.count < per_user_limit)
            if per_user_limit is not None
            else None,
        )
        .returning(coupon_user_usage.c.count)
    )
    return (await conn.execute(statement)).first() is not None


async def insert_usage(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    result = await conn.execute(sa.insert(coupon_usage).values(**values).returning(coupon_usage))
    row: RowMapping = result.mappings().one()
    return row


async def delete_usage(conn: AsyncConnection, coupon_id: int, order_id: str) -> str | None:
    """Give back the use an order took: the usage row goes, both counters go down. Returns
    the user whose use it was, None if the order had none."""
    deleted = await conn.execute(
        sa.delete(coupon_usage)
        .where(coupon_usage.c.coupon_id == coupon_id, coupon_usage.c.order_id == order_id)
        .returning(coupon_usage.c.user_id)
    )
    user_id = deleted.scalar()
    if user_id is None:
        return None
    await conn.execute(
        sa.update(coupons)
        .where(coupons.c.id == coupon_id)
        .values(used_count=coupons.c.used_count - 1)
    )
    key = (coupon_user_usage.c.coupon_id == coupon_id, coupon_user_usage.c.user_id == user_id)
    # count >= 1 is a CHECK: the last use deletes the row instead of reaching zero.
    gone = await conn.execute(
        sa.delete(coupon_user_usage).where(*key, coupon_user_usage.c.count <= 1)
    )
    if not gone.rowcount:
        await conn.execute(
            sa.update(coupon_user_usage).where(*key).values(count=coupon_user_usage.c.count - 1)
        )
    return str(user_id)


def create_validation_log_table(conn: sa.Connection) -> None:
    """The log file's schema on SQLite (see ``Database``); on PostgreSQL the migrations made it."""
    validation_logs.create(conn, checkfirst=True)


# The validation log's columns in the order of ``ValidationLogRecord`` (tasks.py checks it).
LOG_COLUMNS = (
    "code",
    "user_id",
    "order_total_cents",
    "valid",
    "reason",
    "discount_cents",
    "latency_us",
    "created_at",
)
# The server's batches on SQLite, written by ``Database.log_writer`` (kit/sqlite_writer.py).
SQLITE_LOG_INSERT = (
    f"INSERT INTO validation_logs ({', '.join(LOG_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in LOG_COLUMNS)})"
)


def insert_validation_logs(conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows in ``LOG_COLUMNS`` order. Synchronous: called through ``Database.run_log_write``
    (replays, and every batch on PostgreSQL)."""
    conn.execute(
        sa.insert(validation_logs), [dict(zip(LOG_COLUMNS, row, strict=True)) for row in rows]
    )


async def outcome_counts(
    conn: AsyncConnection, code: str, since: datetime | None
) -> list[tuple[str | None, bool, int]]:
    query = (
        sa.select(validation_logs.c.reason, validation_logs.c.valid, sa.func.count())
        .where(validation_logs.c.code == code)
        .group_by(validation_logs.c.reason, validation_logs.c.valid)
    )
    if since is not None:
        query = query.where(validation_logs.c.created_at >= since)
    return [(reason, bool(valid), n) for reason, valid, n in await conn.execute(query)]


async def latency_percentile(
    conn: AsyncConnection, code: str, since: datetime, count: int, fraction: float
) -> int | None:
    """Nearest-rank percentile with ORDER BY/OFFSET: the same SQL on SQLite and PostgreSQL."""
    if count == 0:
        return None
    rank = max(0, min(count - 1, round(fraction * count + 0.5) - 1))
    query = (
        sa.select(validation_logs.c.latency_us)
        .where(validation_logs.c.code == code, validation_logs.c.created_at >= since)
        .order_by(validation_logs.c.latency_us)
        .offset(rank)
        .limit(1)
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def list_validation_logs(
    conn: AsyncConnection,
    *,
    code: str | None,
    user_id: str | None,
    before_id: int | None,
    limit: int,
) -> Sequence[RowMapping]:
    query = sa.select(validation_logs).order_by(validation_logs.c.id.desc()).limit(limit)
    if code is not None:
        query = query.where(validation_logs.c.code == code)
    if user_id is not None:
        query = query.where(validation_logs.c.user_id == user_id)
    if before_id is not None:
        query = query.where(validation_logs.c.id < before_id)
    return (await conn.execute(query)).mappings().all()
