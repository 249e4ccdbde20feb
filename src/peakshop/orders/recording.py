"""Recording admitted flash-sale orders in the system of record, one at a time or in
batches (group commit).

Admission decided in the hot store; the record takes the same units again with its own
conditional statements (and CHECK constraints), so it can never hold more than the sale.
The batched path writes a whole batch with a handful of statements; if anything in it is
not the plain case (an order already recorded, a refusal), that transaction is rolled back
and the batch is written one order at a time in another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import datetime
from functools import partial
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import RowMapping

from peakshop.db import Database
from peakshop.inventory import repository as inventory_repository
from peakshop.inventory.models import flash_sale_buyers, flash_sales
from peakshop.jobs import repository as jobs_repository
from peakshop.jobs.models import jobs
from peakshop.jobs.queue import JobMessage
from peakshop.kit.foreground import ForegroundLoad
from peakshop.kit.sqlite_driver import datetime_processor, execute_many, insert_sql
from peakshop.orders import repository
from peakshop.orders.lifecycle import FLASH_SCOPE
from peakshop.orders.models import order_items, orders

log = structlog.get_logger(__name__)

Recorded = tuple[str, RowMapping | None]
MAX_BATCH = 500
# Batches up to this size are written on the event loop's thread (~1 ms at most on the
# driver path, kit/sqlite_driver.py); bigger ones in the write thread, so that the loop
# keeps answering refused buyers meanwhile.
MAX_INLINE_BATCH = 32


class Admitted(msgspec.Struct, frozen=True, kw_only=True):
    payload: dict[str, Any]
    message: JobMessage
    now: datetime
    pay_by: datetime


def _order_values(
    payload: dict[str, Any], *, job_id: str, now: datetime, pay_by: datetime
) -> dict[str, Any]:
    subtotal = payload["unit_price_cents"] * payload["quantity"]
    return {
        "id": payload["order_id"],
        "user_id": payload["user_id"],
        "kind": "flash_sale",
        "flash_sale_id": payload["sale_id"],
        "status": "pending",
        "failure_reason": None,
        "subtotal_cents": subtotal,
        "discount_cents": 0,
        "total_cents": subtotal,
        "coupon_code": None,
        "idempotency_scope": FLASH_SCOPE.format(sale_id=payload["sale_id"]),
        "idempotency_key": payload["idempotency_key"],
        "request_hash": payload["request_hash"],
        "job_id": job_id,
        "created_at": now,
        "updated_at": now,
        "pay_by": pay_by,
    }


def _item_values(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": payload["order_id"],
        "product_id": payload["product_id"],
        "quantity": payload["quantity"],
        "unit_price_cents": payload["unit_price_cents"],
    }


def record_flash_order(
    conn: sa.Connection,
    *,
    payload: dict[str, Any],
    message: JobMessage,
    now: datetime,
    pay_by: datetime,
) -> tuple[str, RowMapping | None]:
    """Write an admitted flash-sale order, its units and its job row, unless it exists.

    Both the API (right after admission) and a worker (from the queued message, if it gets
    there first or the API died) call this; whoever comes first writes. Returns:
    ('created', None); ('exists', None); ('duplicate', other order) when another order holds
    the idempotency key (the hot store lost its record of it); or ('refused', None) when the
    system of record has no units left for it (the hot store was behind after losing its
    data): the order is then recorded as failed, so the key still answers.
    """
    scope = FLASH_SCOPE.format(sale_id=payload["sale_id"])
    # The order row first, as the claim: of the API and a worker racing to record the same
    # order, the second waits on the first's row and then inserts nothing.
    inserted = repository.insert_order_unless_exists(
        conn,
        _order_values(payload, job_id=message.id, now=now, pay_by=pay_by),
        [_item_values(payload)],
    )
    if not inserted:
        if repository.get_order(conn, payload["order_id"]) is not None:
            return "exists", None
        other = repository.get_by_idempotency(conn, scope, payload["idempotency_key"])
        assert other is not None, "an order insert can only conflict on its id or its key"
        return "duplicate", other
    savepoint = conn.begin_nested()
    refusal = inventory_repository.reserve_in_sale(
        conn,
        payload["sale_id"],
        payload["user_id"],
        payload["quantity"],
        per_user_limit=payload["per_user_limit"],
    )
    if refusal is None:
        savepoint.commit()
    else:
        savepoint.rollback()
        repository.move_status(
            conn,
            payload["order_id"],
            from_status="pending",
            to_status="failed",
            now=now,
            reason=refusal,
        )
    jobs_repository.insert_job(conn, message, now=now, available_at=now.timestamp())
    return ("created", None) if refusal is None else ("refused", None)


class NotPlain(Exception):
    """A batch holds an order that is not the plain case: its transaction must roll back."""


async def write_flash_orders(
    db: Database, batch: list[Admitted], *, background: bool = False
) -> list[Recorded]:
    """Record a batch in its own transaction: the fast path if every order is new and fits;
    else that transaction rolls back and the batch is written one by one in another (two
    transactions in the rare case, rather than a savepoint's two more statements in every
    one). A small batch that buyers wait for is written on the event loop's thread (see
    ``Database.run_write``)."""
    inline = not background and len(batch) <= MAX_INLINE_BATCH
    try:
        return await db.run_write(
            partial(record_flash_orders, batch=batch), background=background, inline=inline
        )
    except NotPlain:
        return await db.run_write(
            partial(record_flash_orders_one_by_one, batch=batch), background=background
        )


def record_flash_orders(conn: sa.Connection, batch: list[Admitted]) -> list[Recorded]:
    """The fast path: every order new and within the sale and the buyers' caps, written in
    a few statements. Raises ``NotPlain`` (roll back) as soon as something is not plain."""
    if not _record_plain_batch(conn, batch):
        raise NotPlain()
    return [("created", None)] * len(batch)


def record_flash_orders_one_by_one(conn: sa.Connection, batch: list[Admitted]) -> list[Recorded]:
    return [
        record_flash_order(
            conn, payload=item.payload, message=item.message, now=item.now, pay_by=item.pay_by
        )
        for item in batch
    ]


def _record_plain_batch(conn: sa.Connection, batch: list[Admitted]) -> bool:
    """Every order inserted, every sale's units and every buyer's cap taken, in a few
    statements; False (the caller rolls back) as soon as something is not plain."""
    if conn.dialect.name == "sqlite":
        return _record_plain_batch_on_driver(conn, batch)
    orders = [
        _order_values(i.payload, job_id=i.message.id, now=i.now, pay_by=i.pay_by) for i in batch
    ]
    if repository.insert_orders_unless_exist(conn, orders) != len(batch):
        return False
    repository.insert_items(conn, [_item_values(i.payload) for i in batch])
    jobs_repository.insert_jobs(
        conn, [i.message for i in batch], now=batch[0].now, available_at=batch[0].now.timestamp()
    )
    per_sale, per_buyer, limits = _units_per_sale_and_buyer(batch)
    # Rows locked in one order (buyers by key, then the sales by id) whichever batch takes
    # them, so that the batches of two API processes wait for each other and never
    # deadlock; the sale's row, which every batch updates, last: held only until the commit.
    held = inventory_repository.hold_for_buyers(
        conn,
        [(sale, user, units, limits[sale]) for (sale, user), units in sorted(per_buyer.items())],
    )
    if held != len(per_buyer):
        return False
    for sale_id, units in sorted(per_sale.items()):
        if not inventory_repository.take_from_sale(conn, sale_id, units):
            return False
    return True


def _units_per_sale_and_buyer(
    batch: list[Admitted],
) -> tuple[dict[int, int], dict[tuple[int, str], int], dict[int, int]]:
    per_sale: dict[int, int] = defaultdict(int)
    per_buyer: dict[tuple[int, str], int] = defaultdict(int)
    limits: dict[int, int] = {}
    for item in batch:
        payload = item.payload
        per_sale[payload["sale_id"]] += payload["quantity"]
        per_buyer[(payload["sale_id"], payload["user_id"])] += payload["quantity"]
        limits[payload["sale_id"]] = payload["per_user_limit"]
    return per_sale, per_buyer, limits


# The same batch on SQLite, as the statements above but run on the sqlite3 driver (see
# kit/sqlite_driver.py: Core's per-statement Python held the GIL for ~220 us per order while
# requests waited). tests/orders/test_recording.py checks both paths write the same rows.
_ORDER_COLUMNS = (
    "id", "user_id", "kind", "flash_sale_id", "status", "subtotal_cents", "discount_cents",
    "total_cents", "idempotency_scope", "idempotency_key", "request_hash", "job_id",
    "created_at", "updated_at", "pay_by",
)  # fmt: skip
_INSERT_ORDERS = insert_sql(orders, _ORDER_COLUMNS, conflict="ON CONFLICT DO NOTHING")
_INSERT_ITEMS = insert_sql(order_items, ("order_id", "product_id", "quantity", "unit_price_cents"))
_JOB_COLUMNS = (
    "id", "name", "payload", "max_attempts", "subject", "status", "attempts", "available_at",
    "created_at", "updated_at",
)  # fmt: skip
_INSERT_JOBS = insert_sql(jobs, _JOB_COLUMNS, conflict="ON CONFLICT DO NOTHING")
_TAKE_FROM_SALE = (
    f"UPDATE {flash_sales.name} SET remaining = remaining - ?, reserved = reserved + ? "
    "WHERE id = ? AND remaining >= ?"
)
# A buyer's units grow only while they stay within the cap: the upsert's WHERE refuses
# (and counts 0) otherwise. Parameters: sale, user, units, cap.
_HOLD_FOR_BUYER = (
    insert_sql(flash_sale_buyers, ("sale_id", "user_id", "quantity"))
    + " ON CONFLICT (sale_id, user_id) DO UPDATE"
    f" SET quantity = {flash_sale_buyers.name}.quantity + excluded.quantity"
    f" WHERE {flash_sale_buyers.name}.quantity + excluded.quantity <= ?"
)
_stored_time = datetime_processor(orders.c.created_at)


def _record_plain_batch_on_driver(conn: sa.Connection, batch: list[Admitted]) -> bool:
    order_rows = []
    item_rows = []
    job_rows = []
    for item in batch:
        payload, message = item.payload, item.message
        now = _stored_time(item.now)
        quantity, price = payload["quantity"], payload["unit_price_cents"]
        subtotal = price * quantity
        order_id, sale_id = payload["order_id"], payload["sale_id"]
        order_rows.append(
            (
                order_id, payload["user_id"], "flash_sale", sale_id, "pending", subtotal, 0,
                subtotal, FLASH_SCOPE.format(sale_id=sale_id), payload["idempotency_key"],
                payload["request_hash"], message.id, now, now, _stored_time(item.pay_by),
            )
        )  # fmt: skip
        item_rows.append((order_id, payload["product_id"], quantity, price))
        job_rows.append(
            (
                message.id, message.name, message.payload, message.max_attempts,
                message.subject, "queued", 0, item.now.timestamp(), now, now,
            )
        )  # fmt: skip
    if execute_many(conn, _INSERT_ORDERS, order_rows) != len(batch):
        return False
    execute_many(conn, _INSERT_ITEMS, item_rows)
    per_sale, per_buyer, limits = _units_per_sale_and_buyer(batch)
    for sale_id, units in per_sale.items():
        if not execute_many(conn, _TAKE_FROM_SALE, [(units, units, sale_id, units)]):
            return False
    holds = [(sale, user, units, limits[sale]) for (sale, user), units in per_buyer.items()]
    if any(units > cap for _, _, units, cap in holds):
        return False
    if execute_many(conn, _HOLD_FOR_BUYER, holds) != len(holds):
        return False
    execute_many(conn, _INSERT_JOBS, job_rows)
    return True


class FlashOrderRecorder:
    """Group commit of admitted orders: requests hand their order over and wait; one task
    writes whatever has queued up, in one transaction, while the next ones queue behind it.
    No waiting to fill a batch: at low load a batch is one order, under load it grows by
    itself. SQLite has one writer anyway; on PostgreSQL it saves a round trip per order."""

    def __init__(self, db: Database, *, load: ForegroundLoad | None = None) -> None:
        self._db = db
        self._load = load  # admitted orders counted for the in-process worker to yield to
        self._queue: asyncio.Queue[tuple[Admitted, asyncio.Future[Recorded]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def record(self, item: Admitted) -> Recorded:
        if self._load is not None:
            self._load.note()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_forever(), name="flash-order-recorder")
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await write_flash_orders(self._db, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
