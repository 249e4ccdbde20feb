"""Background work of the orders domain: the order-processing job (confirmation, with
retries and a compensating dead letter) and the payment-window sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from peakshop.config import Settings
from peakshop.jobs.retry import RetryPolicy
from peakshop.jobs.service import Outbox
from peakshop.jobs.worker import JobContext, JobType, Sweep
from peakshop.kit.clock import utcnow
from peakshop.orders import lifecycle, recording, repository

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

PROCESS_ORDER = "orders.process"
EXPIRE_BATCH = 200


async def process_order(context: JobContext, payload: dict[str, Any]) -> None:
    """Record the order if the API did not (flash sales), then confirm it. Idempotent: an
    order that is no longer pending is left as it is."""
    runtime = context.runtime
    order_id = payload["order_id"]
    async with runtime.db.read() as conn:
        order = await conn.run_sync(repository.get_order, order_id)
    if order is None:
        if payload.get("kind") != "flash_sale":
            raise LookupError(f"order {order_id} is not recorded")
        now = utcnow()
        pay_by = now + timedelta(seconds=runtime.settings.payment_window_seconds)
        outcome, _ = await runtime.db.run_write(
            partial(
                recording.record_flash_order,
                payload=payload,
                message=context.message,
                now=now,
                pay_by=pay_by,
            ),
            background=True,
        )
        _announce_recorded(runtime, payload, outcome)
        if outcome == "duplicate":  # another order holds the key: give these units back
            sale_id, user_id, quantity = payload["sale_id"], payload["user_id"], payload["quantity"]
            context.after_commit(
                lambda: runtime.state.sales.release(
                    sale_id=sale_id, user_id=user_id, quantity=quantity
                )
            )
            return
        if outcome == "refused":
            context.after_commit(lambda: _reload_sale(runtime, payload["sale_id"]))
            return
        async with runtime.db.read() as conn:
            order = await conn.run_sync(repository.get_order, order_id)
        assert order is not None
    if order["status"] == "failed":
        order = await _reopen(runtime, order)
        if order is None:
            return
    if order["status"] != "pending":
        return
    await runtime.payment.confirm(order_id=order_id, total_cents=order["total_cents"])
    outbox = Outbox(runtime)  # the confirmation's notification job
    async with runtime.db.write() as conn:
        confirmed = await lifecycle.confirm(conn, order, now=utcnow(), outbox=outbox)
    if confirmed:
        lifecycle.announce(
            runtime,
            order_id=order_id,
            status="confirmed",
            kind=order["kind"],
            sale_id=order["flash_sale_id"],
        )
    await outbox.publish()


async def process_orders(
    contexts: list[JobContext], payloads: list[dict[str, Any]]
) -> list[Exception | None]:
    """``process_order`` for a batch: one read, one write for the orders the API had not
    recorded yet, the payments at once, one write for the confirmations. Anything out of the
    ordinary (a dead letter retried) goes through ``process_order`` alone."""
    runtime = contexts[0].runtime
    outcomes: list[Exception | None] = [None] * len(payloads)
    ids = [payload["order_id"] for payload in payloads]
    rows = await runtime.db.run_read(partial(repository.get_orders, order_ids=ids))
    missing = [i for i, order_id in enumerate(ids) if order_id not in rows]
    if missing:
        await _record_missing(contexts, payloads, missing, outcomes)
        recorded = [ids[i] for i in missing]
        rows.update(await runtime.db.run_read(partial(repository.get_orders, order_ids=recorded)))
    pending: list[int] = []
    for index, order_id in enumerate(ids):
        order = rows.get(order_id)
        if order is None or outcomes[index] is not None:
            continue
        if order["status"] == "failed":
            outcomes[index] = await _alone(contexts[index], payloads[index])
        elif order["status"] == "pending":
            pending.append(index)
    paid = await asyncio.gather(
        *(
            runtime.payment.confirm(order_id=ids[i], total_cents=rows[ids[i]]["total_cents"])
            for i in pending
        ),
        return_exceptions=True,
    )
    confirmable = []
    for index, result in zip(pending, paid, strict=True):
        if isinstance(result, Exception):
            outcomes[index] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            confirmable.append(rows[ids[index]])
    if confirmable:
        outbox = Outbox(runtime)  # the confirmations' notification jobs
        moved = await runtime.db.run_write(
            partial(lifecycle.confirm_many, order_rows=confirmable, now=utcnow(), outbox=outbox),
            background=True,
        )
        for order_id in moved:
            order = rows[order_id]
            lifecycle.announce(
                runtime,
                order_id=order_id,
                status="confirmed",
                kind=order["kind"],
                sale_id=order["flash_sale_id"],
            )
        await outbox.publish()
    return outcomes


def _announce_recorded(runtime: Runtime, payload: dict[str, Any], outcome: str) -> None:
    """A flash-sale order recorded by a worker (the API had not): pending, or failed when
    the record had no units left for it."""
    status = {"created": "pending", "refused": "failed"}.get(outcome)
    if status is not None:
        lifecycle.announce(
            runtime,
            order_id=payload["order_id"],
            status=status,
            kind="flash_sale",
            sale_id=payload["sale_id"],
        )


async def _record_missing(
    contexts: list[JobContext],
    payloads: list[dict[str, Any]],
    missing: list[int],
    outcomes: list[Exception | None],
) -> None:
    runtime = contexts[0].runtime
    flash = [i for i in missing if payloads[i].get("kind") == "flash_sale"]
    for index in missing:
        if index not in flash:
            outcomes[index] = LookupError(f"order {payloads[index]['order_id']} is not recorded")
    if not flash:
        return
    now = utcnow()
    pay_by = now + timedelta(seconds=runtime.settings.payment_window_seconds)
    batch = [
        recording.Admitted(payload=payloads[i], message=contexts[i].message, now=now, pay_by=pay_by)
        for i in flash
    ]
    results = await recording.write_flash_orders(runtime.db, batch, background=True)
    for index, (outcome, _) in zip(flash, results, strict=True):
        payload = payloads[index]
        _announce_recorded(runtime, payload, outcome)
        if outcome == "duplicate":
            contexts[index].after_commit(_release(runtime, payload))
        elif outcome == "refused":
            contexts[index].after_commit(_reloader(runtime, payload["sale_id"]))


def _release(runtime: Runtime, payload: dict[str, Any]) -> lifecycle.Hook:
    async def release() -> None:
        await runtime.state.sales.release(
            sale_id=payload["sale_id"], user_id=payload["user_id"], quantity=payload["quantity"]
        )

    return release


def _reloader(runtime: Runtime, sale_id: int) -> lifecycle.Hook:
    async def reload() -> None:
        await _reload_sale(runtime, sale_id)

    return reload


async def _alone(context: JobContext, payload: dict[str, Any]) -> Exception | None:
    try:
        await process_order(context, payload)
    except Exception as exc:
        return exc
    return None


async def _reload_sale(runtime: Runtime, sale_id: int) -> None:
    await lifecycle.load_sale_hot(runtime, sale_id, replace=True)


async def _reopen(runtime: Runtime, order: Any) -> Any:
    """A failed order runs again only when its dead-lettered job was retried by an admin."""
    undo: list[lifecycle.Hook] = []
    try:
        async with runtime.db.write() as conn:
            reopened, undo = await lifecycle.reopen(runtime, conn, order, now=utcnow())
    except Exception:
        await lifecycle.run_hooks(undo)
        raise
    if not reopened:
        return None
    lifecycle.announce(
        runtime,
        order_id=order["id"],
        status="pending",
        kind=order["kind"],
        sale_id=order["flash_sale_id"],
    )
    async with runtime.db.read() as conn:
        return await conn.run_sync(repository.get_order, order["id"])


async def compensate_order(context: JobContext, payload: dict[str, Any], error: str) -> None:
    """The last attempt failed: the order fails and gives back its units and coupon use."""
    runtime = context.runtime
    async with runtime.db.write() as conn:
        order = await conn.run_sync(repository.get_order, payload["order_id"])
        hooks = None
        if order is not None and order["status"] == "pending":
            hooks = await lifecycle.end(
                runtime, conn, order, to_status="failed", reason="processing_failed", now=utcnow()
            )
    for hook in hooks or []:
        context.after_commit(hook)


async def expire_overdue(runtime: Runtime) -> None:
    """Cancel the orders still pending past their payment window, releasing their units."""
    while True:
        hooks: list[lifecycle.Hook] = []
        async with runtime.db.write() as conn:
            now = utcnow()
            rows = await repository.overdue_pending(conn, now=now, limit=EXPIRE_BATCH)
            for row in rows:
                hooks += (
                    await lifecycle.end(
                        runtime,
                        conn,
                        row,
                        to_status="cancelled",
                        reason="payment_window_expired",
                        now=now,
                    )
                    or []
                )
        await lifecycle.run_hooks(hooks)
        if rows:
            log.info("orders_expired", count=len(rows))
        if len(rows) < EXPIRE_BATCH:
            return


def job_types(settings: Settings) -> list[JobType]:
    return [
        JobType(
            name=PROCESS_ORDER,
            handle=process_order,
            on_dead=compensate_order,
            handle_batch=process_orders,
            retry=RetryPolicy(
                max_attempts=settings.order_job_max_attempts,
                base_delay=settings.order_job_retry_base_delay,
                max_delay=settings.order_job_retry_max_delay,
            ),
        )
    ]


async def restore_hot_sales(runtime: Runtime, *, replace: bool) -> int:
    """Load every sale that has not ended into the hot store: at start (``replace=False``:
    only what the store lacks), by the sweep below (Redis lost its data), or by
    ``peakshop reconcile`` (``replace=True``: rebuild from the system of record)."""
    from peakshop.inventory import repository as inventory_repository

    async with runtime.db.read() as conn:
        sales = await inventory_repository.open_sales(conn, ends_after=utcnow())
    loaded = 0
    for sale in sales:
        if not replace and await runtime.state.sales.remaining(sale["id"]) is not None:
            continue  # held: the cheap check first, the sale's orders only when needed
        loaded += await lifecycle.load_sale_hot(runtime, sale["id"], replace=replace)
    return loaded


async def _restore_lost_sales(runtime: Runtime) -> None:
    if restored := await restore_hot_sales(runtime, replace=False):
        log.warning("hot_sales_restored", count=restored)


def sweeps(settings: Settings) -> list[Sweep]:
    # A short payment window (tests, demos) is checked more often than the default's 5 s.
    expire_every = min(5.0, max(0.1, settings.payment_window_seconds / 4))
    return [
        Sweep(name="expire-unpaid-orders", every=expire_every, run=expire_overdue),
        Sweep(name="restore-hot-sales", every=2.0, run=_restore_lost_sales),
    ]
