"""Placing orders: flash-sale orders through the hot store's admission, regular orders in
one transaction of the system of record. Both are idempotent on (scope, Idempotency-Key):
the same key with the same request answers with the first order; with another request it
is refused (422).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from sqlalchemy.exc import IntegrityError

from peakshop.coupons import service as coupon_service
from peakshop.coupons.errors import RedemptionRejected
from peakshop.errors import Unavailable
from peakshop.inventory import repository as inventory_repository
from peakshop.inventory.errors import AdmissionRejected, InsufficientStock, ProductNotFound
from peakshop.inventory.service import SaleFacts
from peakshop.jobs import repository as jobs_repository
from peakshop.jobs import service as jobs_service
from peakshop.jobs.queue import JobMessage
from peakshop.jobs.worker import new_message
from peakshop.kit.ids import new_id
from peakshop.kit.money import parse_cents
from peakshop.monitoring import metrics
from peakshop.orders import lifecycle, repository
from peakshop.orders.errors import IdempotencyKeyReused
from peakshop.orders.lifecycle import ORDERS_SCOPE
from peakshop.orders.recording import Admitted
from peakshop.orders.repository import admission_record, parse_record
from peakshop.orders.schemas import Accepted, OrderItemRequest
from peakshop.orders.tasks import PROCESS_ORDER
from peakshop.state.ports import Admission, PreparedOrder

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)


def request_hash(*parts: Any) -> str:
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()


def _replay(record: str, expected_hash: str) -> Accepted:
    first_hash, order_id, job_id = parse_record(record)
    if first_hash != expected_hash:
        raise IdempotencyKeyReused()
    return Accepted(order_id=order_id, job_id=job_id)


# --- flash sales ------------------------------------------------------------------------------


async def _admit(runtime: Runtime, facts: SaleFacts, **attempt: Any) -> Admission:
    admission = await runtime.state.sales.admit(sale_id=facts.id, **attempt)
    if admission.outcome == "not_loaded":
        await lifecycle.load_sale_hot(runtime, facts.id, replace=False)
        admission = await runtime.state.sales.admit(sale_id=facts.id, **attempt)
    return admission


class _FlashOrder:
    """The order an attempt becomes if it is admitted, made only then (``prepare``): most
    of a sale's attempts are refused, and they need no ids, hash or job message."""

    def __init__(
        self, runtime: Runtime, facts: SaleFacts, user_id: str, quantity: int, key: str
    ) -> None:
        self._runtime, self._facts = runtime, facts
        self._user_id, self._quantity, self._key = user_id, quantity, key
        self.payload: dict[str, Any] = {}
        self.message: JobMessage | None = None

    def digest(self) -> str:
        return request_hash("flash", self._facts.id, self._user_id, self._quantity)

    def prepare(self) -> PreparedOrder:
        digest = self.digest()
        order_id, job_id = new_id("ord"), new_id("job")
        self.payload = {
            "kind": "flash_sale",
            "order_id": order_id,
            "sale_id": self._facts.id,
            "product_id": self._facts.product_id,
            "unit_price_cents": self._facts.price_cents,
            "per_user_limit": self._facts.per_user_limit,
            "user_id": self._user_id,
            "quantity": self._quantity,
            "idempotency_key": self._key,
            "request_hash": digest,
        }
        self.message = new_message(
            self._runtime.job_types[PROCESS_ORDER],
            job_id=job_id,
            payload=self.payload,
            subject=order_id,
        )
        # Encoded for the stream only by a store that enqueues it (the Redis script).
        return PreparedOrder(
            record=admission_record(digest, order_id, job_id), message=self.message
        )


async def place_flash_sale_order(
    runtime: Runtime,
    *,
    sale_id: int,
    user_id: str,
    quantity: int,
    idempotency_key: str,
    now: datetime,
) -> tuple[Accepted, bool]:
    """(the answer, whether it is a replay). Losers are refused by the hot store alone."""
    facts = await runtime.sale_directory.get(sale_id)
    state = facts.state_at(now.timestamp())
    if state is not None:
        raise AdmissionRejected("not_active", f"flash sale {sale_id} is not active: {state}")
    order = _FlashOrder(runtime, facts, user_id, quantity, idempotency_key)
    admission = await _admit(
        runtime,
        facts,
        user_id=user_id,
        quantity=quantity,
        per_user_limit=facts.per_user_limit,
        idempotency_key=idempotency_key,
        prepare=order.prepare,
    )
    if admission.outcome == "replay":
        assert admission.record is not None
        return _replay(admission.record, order.digest()), True
    if admission.outcome != "admitted":
        raise AdmissionRejected(admission.outcome, f"flash sale {sale_id}: {admission.outcome}")
    payload, message = order.payload, order.message
    assert message is not None  # prepared by the store on admission
    order_id, job_id, digest = payload["order_id"], message.id, payload["request_hash"]
    pay_by = now + timedelta(seconds=runtime.settings.payment_window_seconds)
    try:
        outcome, other = await runtime.flash_recorder.record(
            Admitted(payload=payload, message=message, now=now, pay_by=pay_by)
        )
    except Exception as exc:
        if admission.enqueued:
            # The order's message is queued with everything needed: a worker records it.
            log.warning("flash_order_left_to_worker", order_id=order_id, error=str(exc))
            return Accepted(order_id=order_id, job_id=job_id), False
        await runtime.state.sales.release(sale_id=sale_id, user_id=user_id, quantity=quantity)
        raise Unavailable("the order could not be recorded; try again") from exc
    if outcome == "duplicate":
        assert other is not None
        await runtime.state.sales.release(sale_id=sale_id, user_id=user_id, quantity=quantity)
        return _replay(
            admission_record(other["request_hash"], other["id"], other["job_id"]), digest
        ), True
    if outcome == "refused":
        # The hot store admitted more than the record holds (it lost data and was rebuilt
        # while orders were in flight): believe the record.
        lifecycle.announce(
            runtime, order_id=order_id, status="failed", kind="flash_sale", sale_id=sale_id
        )
        await lifecycle.load_sale_hot(runtime, sale_id, replace=True)
        raise AdmissionRejected("sold_out", f"flash sale {sale_id}: sold_out")
    if outcome == "created":  # else a worker recorded it first, and announced it
        lifecycle.announce(
            runtime, order_id=order_id, status="pending", kind="flash_sale", sale_id=sale_id
        )
    if not admission.enqueued:
        await jobs_service.publish_committed(runtime, message)
    return Accepted(order_id=order_id, job_id=job_id), False


# --- regular orders ---------------------------------------------------------------------------


async def place_order(
    runtime: Runtime,
    *,
    user_id: str,
    items: list[OrderItemRequest],
    coupon_code: str | None,
    idempotency_key: str,
    now: datetime,
) -> tuple[Accepted, bool]:
    """Reserve every item and redeem the coupon in one transaction: all or nothing."""
    runtime.foreground.note()
    merged: dict[int, int] = {}
    for item in items:
        merged[item.product_id] = merged.get(item.product_id, 0) + item.quantity
    code = coupon_code.upper() if coupon_code else None
    digest = request_hash("order", user_id, sorted(merged.items()), code)
    order_id, job_id = new_id("ord"), new_id("job")
    message = new_message(
        runtime.job_types[PROCESS_ORDER],
        job_id=job_id,
        payload={"kind": "regular", "order_id": order_id},
        subject=order_id,
    )
    coupon_use: int | None = None
    try:
        async with runtime.db.write() as conn:
            existing = await conn.run_sync(
                repository.get_by_idempotency, ORDERS_SCOPE, idempotency_key
            )
            if existing is not None:
                record = admission_record(
                    existing["request_hash"], existing["id"], existing["job_id"]
                )
                return _replay(record, digest), True
            products = await inventory_repository.get_products(conn, list(merged))
            for index, product_id in enumerate(sorted(merged)):  # a fixed lock order
                if product_id not in products:
                    raise ProductNotFound(product_id, field=f"items[{index}].product_id")
                if not await inventory_repository.reserve_product(
                    conn, product_id, merged[product_id]
                ):
                    raise InsufficientStock(product_id, wanted=merged[product_id], field="items")
            subtotal = sum(products[pid]["price_cents"] * qty for pid, qty in merged.items())
            discount = 0
            if code is not None:
                redemption, coupon_use = await coupon_service.redeem(
                    conn,
                    code=code,
                    user_id=user_id,
                    order_id=order_id,
                    order_total_cents=subtotal,
                    now=now,
                )
                discount = parse_cents(redemption.discount, field="discount")
            await repository.insert_order(
                conn,
                {
                    "id": order_id,
                    "user_id": user_id,
                    "kind": "regular",
                    "flash_sale_id": None,
                    "status": "pending",
                    "subtotal_cents": subtotal,
                    "discount_cents": discount,
                    "total_cents": subtotal - discount,
                    "coupon_code": code,
                    "idempotency_scope": ORDERS_SCOPE,
                    "idempotency_key": idempotency_key,
                    "request_hash": digest,
                    "job_id": job_id,
                    "created_at": now,
                    "updated_at": now,
                    "pay_by": now + timedelta(seconds=runtime.settings.payment_window_seconds),
                },
                [
                    {
                        "product_id": pid,
                        "quantity": qty,
                        "unit_price_cents": products[pid]["price_cents"],
                    }
                    for pid, qty in sorted(merged.items())
                ],
            )
            await conn.run_sync(
                jobs_repository.insert_job, message, now=now, available_at=now.timestamp()
            )
    except RedemptionRejected as exc:
        metrics.ORDERS_PLACED.labels(exc.reason).inc()
        raise
    except IntegrityError:
        # A concurrent request with the same key committed first: answer as it did.
        async with runtime.db.read() as conn:
            existing = await conn.run_sync(
                repository.get_by_idempotency, ORDERS_SCOPE, idempotency_key
            )
        if existing is None:
            raise
        record = admission_record(existing["request_hash"], existing["id"], existing["job_id"])
        return _replay(record, digest), True
    lifecycle.announce(runtime, order_id=order_id, status="pending", kind="regular", sale_id=None)
    if coupon_use is not None:
        await runtime.record_coupon_use(coupon_use, user_id)
    await jobs_service.publish_committed(runtime, message)
    return Accepted(order_id=order_id, job_id=job_id), False
