"""Errors of inventory and flash sales."""

from __future__ import annotations

from peakshop.errors import Conflict, NotFound


class ProductNotFound(NotFound):
    code = "product_not_found"

    def __init__(self, product_id: int, *, field: str = "product_id") -> None:
        super().__init__(f"no product with id {product_id}", field=field)


class SaleNotFound(NotFound):
    code = "flash_sale_not_found"

    def __init__(self, sale_id: int) -> None:
        super().__init__(f"no flash sale with id {sale_id}", field="sale_id")


class InsufficientStock(Conflict):
    code = "insufficient_stock"

    def __init__(self, product_id: int, *, wanted: int, field: str = "quantity") -> None:
        super().__init__(
            f"product {product_id} does not have {wanted} units available",
            field=field,
            extra={"reason": "sold_out", "product_id": product_id},
        )


class AdmissionRejected(Conflict):
    """A flash-sale order refused: ``reason`` is sold_out, user_limit_reached or not_active."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, code=reason, extra={"reason": reason})
        self.reason = reason
