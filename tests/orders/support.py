"""Helpers shared by the orders and inventory tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN, SERVICE
from tests.coupons.support import Client, eventually
from tests.fixtures.factories import flash_sale_payload, idempotency_key, product_payload


async def create_product(client: Client, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/inventory", json=product_payload(**overrides), headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_sale(
    client: Client, product_id: int | None = None, **overrides: Any
) -> dict[str, Any]:
    if product_id is None:
        product_id = (await create_product(client, stock=1000))["id"]
    response = await client.post(
        "/api/v1/flash-sales", json=flash_sale_payload(product_id, **overrides), headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def buy(
    client: Client, sale_id: int, user_id: str, quantity: int = 1, key: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        f"/api/v1/flash-sales/{sale_id}/orders",
        json={"user_id": user_id, "quantity": quantity},
        headers={**SERVICE, **(key or idempotency_key())},
    )


async def place(
    client: Client,
    user_id: str,
    items: list[tuple[int, int]],
    coupon_code: str | None = None,
    key: dict[str, str] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "user_id": user_id,
        "items": [{"product_id": pid, "quantity": qty} for pid, qty in items],
    }
    if coupon_code is not None:
        body["coupon_code"] = coupon_code
    return await client.post(
        "/api/v1/orders", json=body, headers={**SERVICE, **(key or idempotency_key())}
    )


async def get(client: Client, path: str, *, admin: bool = False) -> dict[str, Any]:
    response = await client.get(path, headers=ADMIN if admin else SERVICE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def order_settles(client: Client, order_id: str, *, within: float = 10.0) -> dict[str, Any]:
    """The order once it has left pending."""

    async def settled() -> dict[str, Any] | None:
        order = await get(client, f"/api/v1/orders/{order_id}")
        return None if order["status"] == "pending" else order

    return await eventually(settled, within=within)


def conserved(sale: dict[str, Any]) -> bool:
    return sale["remaining"] + sale["reserved"] + sale["sold"] == sale["quantity"]
