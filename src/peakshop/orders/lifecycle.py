"""The order lifecycle: pending -> confirmed | failed | cancelled, and what each transition
does to stock and coupon use, in the system of record first and in the hot store after the
commit (the ``Hook`` list a transition returns).

Every transition is one conditional status update: of two racing transitions (a worker's
confirmation and the payment-window sweep) exactly one happens, and only that one moves
stock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.coupons import service as coupon_service
from peakshop.db import Record
from peakshop.inventory import repository as inventory_repository
from peakshop.inventory import service as inventory_service
from peakshop.jobs import notifications
from peakshop.monitoring import metrics
from peakshop.orders import repository

if TYPE_CHECKING:
    from peakshop.jobs.service import Outbox
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

Hook = Callable[[], Awaitable[None]]
STATUSES = ("pending", "confirmed", "failed", "cancelled")
FLASH_SCOPE = "sale:{sale_id}"
ORDERS_SCOPE = "orders"


def announce(
    runtime: Runtime, *, order_id: str, status: str, kind: str, sale_id: int | None
) -> None:
    """Tell the live dashboard about a transition, after its commit: an order-update event,
    and an inventory-update of the sale (coalesced). Fire-and-forget, and one attribute
    check while nobody listens (monitoring/live.py)."""
    runtime.live.order_update(order_id=order_id, status=status, kind=kind, sale_id=sale_id)
    runtime.live.stock_changed(sale_id)


def _announced(runtime: Runtime, order: RowMapping, status: str) -> Hook:
    order_id, kind, sale_id = order["id"], order["kind"], order["flash_sale_id"]

    async def hook() -> None:
        announce(runtime, order_id=order_id, status=status, kind=kind, sale_id=sale_id)

    return hook


async def run_hooks(hooks: list[Hook]) -> None:
    for hook in hooks:
        try:
            await hook()
        except Exception:  # the record stands; the hot store is reconciled from it
            log.exception("hot_state_update_failed")


async def confirm(
    conn: AsyncConnection, order: RowMapping, *, now: datetime, outbox: Outbox | None = None
) -> bool:
    """pending -> confirmed: the reserved units become sold. With an ``outbox``, the order's
    notification job is written in the same transaction (publish the outbox after the
    commit); every caller that confirms an order for a buyer passes one."""
    if not await conn.run_sync(
        repository.move_status, order["id"], from_status="pending", to_status="confirmed", now=now
    ):
        return False
    items = (await conn.run_sync(repository.items_of, [order["id"]]))[order["id"]]
    for item in items:
        if order["flash_sale_id"] is not None:
            await conn.run_sync(
                inventory_repository.confirm_in_sale, order["flash_sale_id"], item["quantity"]
            )
        else:
            await conn.run_sync(
                inventory_repository.confirm_product, item["product_id"], item["quantity"]
            )
    if outbox is not None:
        await conn.run_sync(notifications.stage_order_confirmed, outbox, [order["id"]], now=now)
    metrics.ORDER_TRANSITIONS.labels("confirmed").inc()
    return True


def confirm_many(
    conn: sa.Connection,
    order_rows: list[Record],
    *,
    now: datetime,
    outbox: Outbox | None = None,
) -> list[str]:
    """``confirm`` for a batch, with one stock statement per sale and per product (and one
    insert for the notification jobs of the orders that moved). Returns the ids of the
    orders confirmed. Synchronous: run it through ``Database.run_write``."""
    moved = repository.confirm_pending(conn, [row["id"] for row in order_rows], now=now)
    if not moved:
        return []
    sale_of = {row["id"]: row["flash_sale_id"] for row in order_rows}
    per_sale: dict[int, int] = defaultdict(int)
    per_product: dict[int, int] = defaultdict(int)
    for order_id, items in repository.items_of(conn, moved).items():
        for item in items:
            if sale_of[order_id] is not None:
                per_sale[sale_of[order_id]] += item["quantity"]
            else:
                per_product[item["product_id"]] += item["quantity"]
    for sale_id, units in sorted(per_sale.items()):  # a fixed lock order
        inventory_repository.confirm_in_sale(conn, sale_id, units)
    for product_id, units in sorted(per_product.items()):
        inventory_repository.confirm_product(conn, product_id, units)
    if outbox is not None:
        notifications.stage_order_confirmed(conn, outbox, moved, now=now)
    metrics.ORDER_TRANSITIONS.labels("confirmed").inc(len(moved))
    return list(moved)


async def end(
    runtime: Runtime,
    conn: AsyncConnection,
    order: RowMapping,
    *,
    to_status: str,
    reason: str | None,
    now: datetime,
) -> list[Hook] | None:
    """pending or confirmed -> failed or cancelled, giving back the units (reserved or sold)
    and the coupon use. None if the order had moved on meanwhile. Returns the hot-store
    updates to run after the commit."""
    from_status = order["status"]
    if from_status not in ("pending", "confirmed"):
        return None
    if not await conn.run_sync(
        repository.move_status,
        order["id"],
        from_status=from_status,
        to_status=to_status,
        now=now,
        reason=reason,
    ):
        return None
    from_sold = from_status == "confirmed"
    hooks: list[Hook] = []
    items = (await conn.run_sync(repository.items_of, [order["id"]]))[order["id"]]
    for item in items:
        quantity = item["quantity"]
        sale_id = order["flash_sale_id"]
        if sale_id is not None:
            await inventory_repository.release_in_sale(
                conn, sale_id, order["user_id"], quantity, from_sold=from_sold
            )
            hooks.append(_hot_release(runtime, sale_id, order["user_id"], quantity))
        else:
            await inventory_repository.release_product(
                conn, item["product_id"], quantity, from_sold=from_sold
            )
    if order["coupon_code"] is not None:
        released = await coupon_service.release_redemption(
            conn, code=order["coupon_code"], order_id=order["id"]
        )
        if released is not None:
            coupon_id, user_id = released
            hooks.append(lambda: runtime.state.counters.release(coupon_id, user_id))
    hooks.append(_announced(runtime, order, to_status))
    metrics.ORDER_TRANSITIONS.labels(to_status).inc()
    return hooks


def _hot_release(runtime: Runtime, sale_id: int, user_id: str, quantity: int) -> Hook:
    async def release() -> None:
        await runtime.state.sales.release(sale_id=sale_id, user_id=user_id, quantity=quantity)

    return release


async def load_sale_hot(runtime: Runtime, sale_id: int, *, replace: bool) -> bool:
    """Put a sale's state from the system of record into the hot store (``replace=False``:
    only if the store lacks it, e.g. after Redis lost its data)."""
    async with runtime.db.read() as conn:
        sale = await inventory_repository.get_sale(conn, sale_id)
        if sale is None:
            return False
        idempotency = await repository.sale_idempotency(conn, sale_id)
        return await inventory_service.load_hot(
            runtime.state.sales, conn, sale=sale, idempotency=idempotency, replace=replace
        )


async def reopen(
    runtime: Runtime, conn: AsyncConnection, order: RowMapping, *, now: datetime
) -> tuple[bool, list[Hook]]:
    """failed -> pending for an order whose processing died (its job was a dead letter that
    an admin retried): take its units again, or leave it failed if they are gone. Returns
    (reopened, hot-store updates to undo if the transaction does not commit)."""
    if order["status"] != "failed" or order["failure_reason"] != "processing_failed":
        return False, []
    items = (await conn.run_sync(repository.items_of, [order["id"]]))[order["id"]]
    undo: list[Hook] = []
    savepoint = await conn.begin_nested()
    refused = False
    for item in items:
        sale_id = order["flash_sale_id"]
        if sale_id is not None:
            facts = await runtime.sale_directory.get(sale_id)
            taken = await runtime.state.sales.take(
                sale_id=sale_id,
                user_id=order["user_id"],
                quantity=item["quantity"],
                per_user_limit=facts.per_user_limit,
            )
            if taken == "taken":
                undo.append(_hot_release(runtime, sale_id, order["user_id"], item["quantity"]))
            refused = refused or taken not in ("taken", "not_loaded")
            refused = refused or bool(
                await conn.run_sync(
                    inventory_repository.reserve_in_sale,
                    sale_id,
                    order["user_id"],
                    item["quantity"],
                    per_user_limit=facts.per_user_limit,
                )
            )
        else:
            refused = refused or not await inventory_repository.reserve_product(
                conn, item["product_id"], item["quantity"]
            )
    if order["coupon_code"] is not None and not refused:
        runtime.mark_usage_counters_stale()  # the hot counters are rebuilt from the record
        try:
            await coupon_service.redeem(
                conn,
                code=order["coupon_code"],
                user_id=order["user_id"],
                order_id=order["id"],
                order_total_cents=order["subtotal_cents"],
                now=now,
            )
        except Exception:
            refused = True
    if refused:
        await savepoint.rollback()
        await run_hooks(undo)
        return False, []
    await savepoint.commit()
    await conn.run_sync(
        repository.move_status,
        order["id"],
        from_status="failed",
        to_status="pending",
        now=now,
        reason=None,
    )
    return True, undo
