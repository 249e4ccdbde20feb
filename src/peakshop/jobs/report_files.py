"""The contents of reports, streamed from the database into a CSV file.

Rows come through a server-side cursor (``conn.stream`` with ``yield_per``: a named cursor on
PostgreSQL, a stepped statement on SQLite) and go to the file one chunk at a time, so memory
stays flat whatever the number of rows (``benchmarks/report_memory.py`` measures it).

- sales: one row per order created in [from, to);
- coupons: per coupon, the redemptions made in [from, to) and the discount they gave;
- inventory: per product, the stock ledger at generation time (the range does not apply).
"""

from __future__ import annotations

import asyncio
import csv
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy import Row

from peakshop.catalog.models import products
from peakshop.coupons.models import coupon_usage, coupons
from peakshop.db import Database
from peakshop.kit.clock import from_db
from peakshop.kit.money import format_cents
from peakshop.orders.models import orders

CHUNK_ROWS = 2_000  # rows fetched from the cursor and written at once

HEADERS: dict[str, list[str]] = {
    "sales": ["order_id", "created_at", "user_id", "status", "total", "discount", "coupon_code"],
    "coupons": ["coupon_id", "code", "redemptions", "discount_total", "order_total"],
    "inventory": [
        "product_id",
        "name",
        "initial_stock",
        "current_stock",
        "reserved",
        "sold",
        "allocated",
    ],
}


def _timestamp(value: datetime | None) -> str:
    stamp = from_db(value)
    return "" if stamp is None else stamp.isoformat()


def _sales(range_from: datetime | None, range_to: datetime | None) -> sa.Select[Any]:
    assert range_from is not None and range_to is not None
    return (
        sa.select(
            orders.c.id,
            orders.c.created_at,
            orders.c.user_id,
            orders.c.status,
            orders.c.total_cents,
            orders.c.discount_cents,
            orders.c.coupon_code,
        )
        .where(orders.c.created_at >= range_from, orders.c.created_at < range_to)
        .order_by(orders.c.created_at, orders.c.seq)
    )


def _sales_row(row: Row[Any]) -> list[Any]:
    order_id, created_at, user_id, status, total, discount, coupon = tuple(row)
    return [
        order_id,
        _timestamp(created_at),
        user_id,
        status,
        format_cents(total),
        format_cents(discount),
        coupon or "",
    ]


def _coupons(range_from: datetime | None, range_to: datetime | None) -> sa.Select[Any]:
    assert range_from is not None and range_to is not None
    used = (
        sa.select(
            coupon_usage.c.coupon_id,
            sa.func.count().label("redemptions"),
            sa.func.sum(coupon_usage.c.discount_cents).label("discount"),
            sa.func.sum(coupon_usage.c.order_total_cents).label("order_total"),
        )
        .where(coupon_usage.c.used_at >= range_from, coupon_usage.c.used_at < range_to)
        .group_by(coupon_usage.c.coupon_id)
        .subquery()
    )
    return (
        sa.select(
            coupons.c.id, coupons.c.code, used.c.redemptions, used.c.discount, used.c.order_total
        )
        .join_from(used, coupons, coupons.c.id == used.c.coupon_id)
        .order_by(coupons.c.code)
    )


def _coupons_row(row: Row[Any]) -> list[Any]:
    coupon_id, code, redemptions, discount, order_total = tuple(row)
    return [
        coupon_id,
        code,
        int(redemptions),
        format_cents(int(discount)),
        format_cents(int(order_total)),
    ]


def _inventory(range_from: datetime | None, range_to: datetime | None) -> sa.Select[Any]:
    return sa.select(
        products.c.id,
        products.c.name,
        products.c.initial_stock,
        products.c.available,
        products.c.reserved,
        products.c.sold,
        products.c.allocated,
    ).order_by(products.c.id)


def _inventory_row(row: Row[Any]) -> list[Any]:
    return list(row)


QUERIES: dict[str, Callable[[datetime | None, datetime | None], sa.Select[Any]]] = {
    "sales": _sales,
    "coupons": _coupons,
    "inventory": _inventory,
}
ROWS: dict[str, Callable[[Row[Any]], list[Any]]] = {
    "sales": _sales_row,
    "coupons": _coupons_row,
    "inventory": _inventory_row,
}


def _finish(out: TextIO, partial: Path, path: Path) -> int:
    out.flush()
    os.fsync(out.fileno())
    out.close()
    os.replace(partial, path)
    return path.stat().st_size


def _discard(out: TextIO, partial: Path) -> None:
    out.close()
    partial.unlink(missing_ok=True)


async def write_csv(
    db: Database,
    *,
    report_type: str,
    range_from: datetime | None,
    range_to: datetime | None,
    path: Path,
) -> tuple[int, int]:
    """Write the report to ``path`` (through a temporary file beside it, renamed at the end:
    a reader never sees half a report). Returns (data rows, bytes)."""
    query = QUERIES[report_type](range_from, range_to).execution_options(yield_per=CHUNK_ROWS)
    to_row = ROWS[report_type]
    # Its own temporary name: two attempts never write into one file, even on a lapsed lease.
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    out = await asyncio.to_thread(partial.open, "w", newline="", encoding="utf-8")
    count = 0
    try:
        writer = csv.writer(out)
        writer.writerow(HEADERS[report_type])
        async with db.read() as conn:
            result = await conn.stream(query)
            async for chunk in result.partitions():
                # Only one chunk is ever in memory; the file write goes to a thread.
                await asyncio.to_thread(writer.writerows, [to_row(row) for row in chunk])
                count += len(chunk)
        size = await asyncio.to_thread(_finish, out, partial, path)
    except BaseException:
        await asyncio.to_thread(_discard, out, partial)
        raise
    return count, size
