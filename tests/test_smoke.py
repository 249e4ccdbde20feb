"""The app starts on every backend and answers health, readiness and a validation."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import ADMIN, SERVICE
from tests.fixtures.factories import time_window_coupon


async def test_health_ready_and_validate(client: AsyncTestClient[Any], backend: str) -> None:
    health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["mode"] == ("scaled" if backend == "scaled" else "embedded")
    assert (await client.get("/ready")).status_code == 200

    coupon = time_window_coupon(discount_value="15")
    assert (await client.post("/api/v1/coupons", json=coupon, headers=ADMIN)).status_code == 201
    response = await client.post(
        "/api/v1/coupons/validate",
        json={"code": coupon["code"], "user_id": "user_0000001", "order_total": "20.00"},
        headers=SERVICE,
    )
    assert response.status_code == 200
    assert response.json() == {
        "valid": True,
        "code": coupon["code"],
        "discount": "3.00",
        "final_total": "17.00",
        "reason": None,
    }
