"""Bad input on the order endpoints: a clear 4xx naming the problem, and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from peakshop.config import Settings
from tests.conftest import ADMIN, SERVICE
from tests.coupons.support import Client, count_rows
from tests.fixtures.factories import idempotency_key
from tests.orders.support import create_product, create_sale, get


async def _nothing_written(settings: Settings) -> None:
    for table in ("orders", "order_items", "flash_sale_buyers"):
        assert await count_rows(settings, table) == 0, table
    # Admin set-up writes queue audit jobs; no order job may exist.
    assert await count_rows(settings, "jobs", name="orders.process") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "user_1", "quantity": 0}, "quantity"),
        ({"user_id": "user_1", "quantity": -2}, "quantity"),
        ({"user_id": "user_1", "quantity": 10**12}, "quantity"),
        ({"user_id": "", "quantity": 1}, "user_id"),
        ({"user_id": "bad user!", "quantity": 1}, "user_id"),
        ({"quantity": 1}, "user_id"),
        ({"user_id": "user_1", "quantity": 1, "price": "0.01"}, "price"),
    ],
)
async def test_bad_flash_sale_orders(
    shop: Client, settings: Settings, body: dict[str, Any], field: str
) -> None:
    sale = await create_sale(shop, quantity=5)
    response = await shop.post(
        f"/api/v1/flash-sales/{sale['id']}/orders",
        json=body,
        headers={**SERVICE, **idempotency_key()},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    await _nothing_written(settings)
    assert (await get(shop, f"/api/v1/flash-sales/{sale['id']}"))["remaining"] == 5


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "the Idempotency-Key header is required"),
        ({"Idempotency-Key": ""}, "Idempotency-Key must be 1-128"),
        ({"Idempotency-Key": "has space"}, "Idempotency-Key must be 1-128"),
        ({"Idempotency-Key": "k" * 129}, "Idempotency-Key must be 1-128"),
    ],
)
async def test_the_idempotency_key_is_required_and_checked(
    shop: Client, settings: Settings, headers: dict[str, str], message: str
) -> None:
    sale = await create_sale(shop, quantity=5)
    product = await create_product(shop)
    for path, body in (
        (f"/api/v1/flash-sales/{sale['id']}/orders", {"user_id": "user_1"}),
        (
            "/api/v1/orders",
            {"user_id": "user_1", "items": [{"product_id": product["id"], "quantity": 1}]},
        ),
    ):
        response = await shop.post(path, json=body, headers={**SERVICE, **headers})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["field"] == "Idempotency-Key" and error["message"].startswith(message)
    await _nothing_written(settings)


async def test_unknown_or_malformed_sales(shop: Client, settings: Settings) -> None:
    unknown = await shop.post(
        "/api/v1/flash-sales/987654/orders",
        json={"user_id": "user_1"},
        headers={**SERVICE, **idempotency_key()},
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "flash_sale_not_found"
    malformed = await shop.post(
        "/api/v1/flash-sales/abc/orders",
        json={"user_id": "user_1"},
        headers={**SERVICE, **idempotency_key()},
    )
    assert malformed.status_code in (400, 404)
    await _nothing_written(settings)


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], "items"),
        ([{"product_id": 0, "quantity": 1}], "items[0].product_id"),
        ([{"product_id": 1, "quantity": 0}], "items[0].quantity"),
        ([{"product_id": 1, "quantity": 1}, {"product_id": 1}], "items[1]"),
        ([{"product_id": "x", "quantity": 1}], "items[0].product_id"),
    ],
)
async def test_bad_regular_orders(
    shop: Client, settings: Settings, items: list[dict[str, Any]], field: str
) -> None:
    await create_product(shop)
    response = await shop.post(
        "/api/v1/orders",
        json={"user_id": "user_1", "items": items},
        headers={**SERVICE, **idempotency_key()},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    await _nothing_written(settings)


async def test_an_unknown_product_names_the_item(shop: Client, settings: Settings) -> None:
    known = await create_product(shop, stock=5)
    response = await shop.post(
        "/api/v1/orders",
        json={
            "user_id": "user_1",
            "items": [
                {"product_id": known["id"], "quantity": 1},
                {"product_id": 999_999, "quantity": 1},
            ],
        },
        headers={**SERVICE, **idempotency_key()},
    )
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "items[1].product_id"
    assert (await get(shop, f"/api/v1/inventory/{known['id']}"))["current_stock"] == 5
    await _nothing_written(settings)


async def test_wrong_tokens_are_refused(shop: Client, settings: Settings) -> None:
    sale = await create_sale(shop, quantity=5)
    path = f"/api/v1/flash-sales/{sale['id']}/orders"
    body = {"user_id": "user_1"}
    missing = await shop.post(path, json=body, headers=idempotency_key())
    assert missing.status_code == 401
    wrong = await shop.post(
        path, json=body, headers={"Authorization": "Bearer nope", **idempotency_key()}
    )
    assert wrong.status_code == 401
    assert (await shop.get("/api/v1/jobs/dead-letters", headers=SERVICE)).status_code == 403
    assert (await shop.get("/api/v1/orders/admin/metrics", headers=SERVICE)).status_code == 403
    assert (await shop.get("/api/v1/orders/admin/metrics", headers=ADMIN)).status_code == 200
    await _nothing_written(settings)


async def test_unknown_orders_and_jobs_are_404(shop: Client) -> None:
    assert (await shop.get("/api/v1/orders/ord_nope", headers=SERVICE)).status_code == 404
    assert (await shop.get("/api/v1/orders/jobs/job_nope", headers=SERVICE)).status_code == 404
    cancel = await shop.post("/api/v1/orders/ord_nope/cancel", headers=SERVICE)
    assert cancel.status_code == 404 and cancel.json()["error"]["code"] == "order_not_found"
    retry = await shop.post("/api/v1/jobs/dead-letters/job_nope/retry", headers=ADMIN)
    assert retry.status_code == 404
