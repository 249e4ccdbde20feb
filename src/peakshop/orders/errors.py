"""Errors of the orders domain."""

from __future__ import annotations

from peakshop.errors import Conflict, NotFound, PeakshopError


class OrderNotFound(NotFound):
    code = "order_not_found"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order with id {order_id!r}", field="order_id")


class IdempotencyKeyReused(PeakshopError):
    """The key was used before with a different request body."""

    status_code = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used with a different request; use a new key",
            field="Idempotency-Key",
        )


class NotCancellable(Conflict):
    code = "not_cancellable"

    def __init__(self, status: str) -> None:
        super().__init__(f"an order that is {status} cannot be cancelled", field="order_id")


class PaymentFailed(Exception):
    """A confirmation attempt failed (transient): the job is retried."""
