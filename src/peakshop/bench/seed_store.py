"""The seeder's two bulk paths: ``executemany`` in one transaction on SQLite (blocking
``sqlite3``), binary COPY on PostgreSQL (asyncpg). Never row-by-row inserts."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import sqlalchemy as sa
from rich.progress import Progress, TaskID
from sqlalchemy.dialects import sqlite

from peakshop.bench.seed_data import (
    DAY,
    EMAIL_DOMAIN,
    CouponSet,
    SeedError,
    signup_offsets,
    user_id,
)
from peakshop.db import LOGS_SCHEMA, log_database_path
from peakshop.kit.sqlite_writer import SQLITE_TIME_FORMAT

USER_COLUMNS = ("id", "email", "created_at")
COUPON_COLUMNS = (
    "id",
    "code",
    "type",
    "status",
    "discount_type",
    "discount_value",
    "max_discount_cents",
    "min_order_total_cents",
    "starts_at",
    "ends_at",
    "owner_user_id",
    "usage_limit",
    "per_user_limit",
    "used_count",
    "created_at",
    "updated_at",
)
USAGE_COLUMNS = (
    "coupon_id",
    "user_id",
    "order_id",
    "order_total_cents",
    "discount_cents",
    "used_at",
)
USER_USAGE_COLUMNS = ("coupon_id", "user_id", "count")
# Children first, so that emptying them never trips a foreign key.
TABLES = ("validation_logs", "coupon_usage", "coupon_user_usage", "coupons", "users")
CATALOG_TABLES = ("categories", "sellers", "products", "orders", "order_items", "sales_daily")

if TYPE_CHECKING:
    from peakshop.bench.seed_catalog_store import CatalogPlan

Row = tuple[Any, ...]
Stamp = Callable[[float], Any]


class DatabaseNotEmpty(Exception):
    """The database already holds users or coupons, and neither --reset nor --if-empty was given."""


@dataclass(frozen=True, slots=True)
class Plan:
    users: int
    seed: int
    now: float
    chunk_size: int
    reset: bool
    if_empty: bool
    data: CouponSet
    catalog: CatalogPlan | None = None  # sellers, categories, products, orders


@dataclass(slots=True)
class Tracker:
    """Times each phase and drives the progress bar."""

    progress: Progress | None
    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str, total: int = 1) -> Iterator[Callable[[int], None]]:
        progress = self.progress
        task: TaskID | None = None
        if progress is not None:
            task = progress.add_task(name, total=max(total, 1))

        def advance(done: int) -> None:
            if progress is not None and task is not None:
                progress.advance(task, done)

        started = time.perf_counter()
        yield advance
        self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started
        if progress is not None and task is not None:
            progress.update(task, completed=max(total, 1))


def coupon_rows(data: CouponSet, stamp: Stamp) -> list[Row]:
    rows: list[Row] = []
    for coupon in data.coupons:
        rule = coupon.rule
        created = stamp(coupon.created_at)
        rows.append(
            (
                rule.id,
                rule.code,
                rule.type,
                "active" if rule.active else "inactive",
                rule.discount_type,
                rule.discount_value,
                rule.max_discount_cents,
                rule.min_order_total_cents,
                None if rule.starts_at is None else stamp(rule.starts_at),
                None if rule.ends_at is None else stamp(rule.ends_at),
                rule.owner_user_id,
                rule.usage_limit,
                rule.per_user_limit,
                coupon.used_count,
                created,
                created,
            )
        )
    return rows


def usage_rows(data: CouponSet, stamp: Stamp) -> list[Row]:
    return [
        (
            u.coupon_id,
            u.user_id,
            u.order_id,
            u.order_total_cents,
            u.discount_cents,
            stamp(u.used_at),
        )
        for u in data.usage
    ]


def user_usage_rows(data: CouponSet) -> list[Row]:
    return [(coupon_id, user, count) for (coupon_id, user), count in data.per_user.items()]


def first_signup_day(now: float) -> int:
    """Midnight (UTC) a year before now: user sign-up offsets count from here."""
    return int(now - 365 * DAY) // DAY * DAY


def user_chunks(plan: Plan, stamps: Callable[[list[int]], list[Any]]) -> Iterator[list[Row]]:
    """Users in chunks of ``plan.chunk_size``, so memory stays flat whatever the count."""
    for start in range(1, plan.users + 1, plan.chunk_size):
        stop = min(start + plan.chunk_size, plan.users + 1)
        ids = [user_id(number) for number in range(start, stop)]
        emails = [f"{uid}@{EMAIL_DOMAIN}" for uid in ids]
        offsets = signup_offsets(plan.users, start=start, stop=stop, seed=plan.seed)
        yield list(zip(ids, emails, stamps(offsets), strict=True))


def sqlite_stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(SQLITE_TIME_FORMAT)


def _sqlite_signup_stamps(first_day: int) -> Callable[[list[int]], list[str]]:
    # strftime on a million datetimes takes ~2 s on the 2-core machine; a table of days and
    # one of seconds of the day make each stamp two lookups and a concatenation (~0.25 s).
    days = [sqlite_stamp(first_day + d * DAY)[:11] for d in range(367)]
    seconds = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000" for s in range(DAY)]

    def stamps(offsets: list[int]) -> list[str]:
        return [days[x // DAY] + seconds[x % DAY] for x in offsets]

    return stamps


def check_constraints_hold(conn: sqlite3.Connection, table: sa.Table) -> None:
    """Every row of ``table`` satisfies its CHECK constraints, or SeedError names one."""
    for constraint in table.constraints:
        if not isinstance(constraint, sa.CheckConstraint):
            continue
        condition = constraint.sqltext.compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
        )
        query = f"SELECT count(*) FROM {table.name} WHERE NOT ({condition})"
        if broken := conn.execute(query).fetchone()[0]:
            raise SeedError(
                f"{broken} seeded row(s) of {table.name} break its check {constraint.name}"
            )


def _sql_insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def write_sqlite(path: str, plan: Plan, tracker: Tracker) -> bool:
    """Everything in one transaction: a failed seed leaves the database as it was. Returns
    False when ``if_empty`` found data and nothing was written."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        # Helper threads for SQLite's sorter: the indexes built after the bulk load sort
        # millions of keys (the orders' four: 3.10 and 3.12 s against 3.85 and 3.69 s without,
        # in alternating `peakshop seed --sellers 1000 --products 100000 --orders 1000000`).
        conn.execute(f"PRAGMA threads={min(os.cpu_count() or 1, 4)}")
        # The validation log's file (see peakshop.db.Database), emptied by --reset.
        conn.execute(f"ATTACH DATABASE ? AS {LOGS_SCHEMA}", (log_database_path(path),))
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _sqlite_prepare(conn, plan, tracker):
                conn.execute("ROLLBACK")
                return False
            orders = None
            if plan.catalog is not None:
                from peakshop.bench import seed_catalog_store

                # Started before the users: the orders' generator gets going meanwhile.
                orders = seed_catalog_store.SqliteOrderChunks(plan.catalog)
            try:
                stamps = _sqlite_signup_stamps(first_signup_day(plan.now))
                insert_users = _sql_insert("users", USER_COLUMNS)
                with tracker.phase("users", plan.users) as advance:
                    for chunk in user_chunks(plan, stamps):
                        conn.executemany(insert_users, chunk)
                        advance(len(chunk))
                with tracker.phase("coupons and usage"):
                    for table, columns, rows in (
                        ("coupons", COUPON_COLUMNS, coupon_rows(plan.data, sqlite_stamp)),
                        ("coupon_usage", USAGE_COLUMNS, usage_rows(plan.data, sqlite_stamp)),
                        ("coupon_user_usage", USER_USAGE_COLUMNS, user_usage_rows(plan.data)),
                    ):
                        conn.executemany(_sql_insert(table, columns), rows)
                if plan.catalog is not None and orders is not None:
                    _check_catalog_empty(
                        conn.execute("SELECT EXISTS (SELECT 1 FROM products)").fetchone()[0], plan
                    )
                    seed_catalog_store.write_sqlite(conn, plan.catalog, tracker, orders)
            finally:
                if orders is not None:
                    orders.close()
            with tracker.phase("commit"):
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        with tracker.phase("analyze"):
            conn.execute("ANALYZE")
        return True
    finally:
        conn.close()


def _sqlite_prepare(conn: sqlite3.Connection, plan: Plan, tracker: Tracker) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM coupons)"
    ).fetchone()
    if not _may_write(has_data=bool(row[0]), plan=plan):
        return False
    if plan.reset:
        with tracker.phase("reset"):
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")
    return True


def _check_catalog_empty(has_products: Any, plan: Plan) -> None:
    if has_products and not plan.reset:
        raise DatabaseNotEmpty(
            "the database already holds products: use --reset to replace the catalog and orders"
        )


def _may_write(*, has_data: bool, plan: Plan) -> bool:
    if not has_data or plan.reset:
        return True
    if plan.if_empty:
        return False
    raise DatabaseNotEmpty(
        "the database already holds users or coupons: use --reset to replace them, "
        "or --if-empty to keep them"
    )


def _pg_signup_stamps(first_day: int) -> Callable[[list[int]], list[datetime]]:
    def stamps(offsets: list[int]) -> list[datetime]:
        return [datetime.fromtimestamp(first_day + x, UTC) for x in offsets]

    return stamps


def _pg_stamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _rows_of(chunks: Iterator[list[Row]], advance: Callable[[int], None]) -> Iterator[Row]:
    for chunk in chunks:
        yield from chunk
        advance(len(chunk))


async def write_postgres(dsn: str, plan: Plan, tracker: Tracker) -> bool:
    """One transaction of COPYs; the coupon ids are given, so the sequence is moved past them."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            has_data = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM coupons)"
            )
            if not _may_write(has_data=bool(has_data), plan=plan):
                return False
            if plan.reset:
                with tracker.phase("reset"):
                    await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
            stamps = _pg_signup_stamps(first_signup_day(plan.now))
            with tracker.phase("users", plan.users) as advance:
                # One COPY fed by a generator: asyncpg flushes its buffer as it fills, so the
                # server inserts one chunk while the next is being generated.
                await conn.copy_records_to_table(
                    "users",
                    records=_rows_of(user_chunks(plan, stamps), advance),
                    columns=USER_COLUMNS,
                )
            with tracker.phase("coupons and usage"):
                for table, columns, rows in (
                    ("coupons", COUPON_COLUMNS, coupon_rows(plan.data, _pg_stamp)),
                    ("coupon_usage", USAGE_COLUMNS, usage_rows(plan.data, _pg_stamp)),
                    ("coupon_user_usage", USER_USAGE_COLUMNS, user_usage_rows(plan.data)),
                ):
                    await conn.copy_records_to_table(table, records=rows, columns=columns)
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('coupons', 'id'), "
                    "COALESCE((SELECT max(id) FROM coupons), 0) + 1, false)"
                )
            if plan.catalog is not None:
                from peakshop.bench import seed_catalog_store

                _check_catalog_empty(
                    await conn.fetchval("SELECT EXISTS (SELECT 1 FROM products)"), plan
                )
                await seed_catalog_store.write_postgres(conn, plan.catalog, tracker)
        with tracker.phase("analyze"):
            tables = [*TABLES, *(CATALOG_TABLES if plan.catalog else ())]
            await conn.execute(f"ANALYZE {', '.join(tables)}")
        return True
    finally:
        await conn.close()
