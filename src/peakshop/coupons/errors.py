"""Errors of the coupons domain."""

from __future__ import annotations

from peakshop.errors import Conflict, NotFound


class CouponNotFound(NotFound):
    code = "coupon_not_found"

    def __init__(self, code: str) -> None:
        super().__init__(f"no coupon with code {code!r}", field="code")


class CouponCodeTaken(Conflict):
    code = "coupon_code_taken"

    def __init__(self, code: str) -> None:
        super().__init__(f"a coupon with code {code!r} already exists", field="code")


class RedemptionRejected(Conflict):
    """The coupon cannot be redeemed; ``reason`` is one of the validation reasons."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"coupon cannot be redeemed: {reason}", code=reason, extra={"reason": reason}
        )
        self.reason = reason


class OrderAlreadyRedeemed(Conflict):
    code = "order_id_conflict"

    def __init__(self) -> None:
        super().__init__(
            "this order_id already redeemed the coupon for another user", field="order_id"
        )
