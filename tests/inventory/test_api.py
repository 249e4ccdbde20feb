"""Inventory through the HTTP API: products and their stock ledger, restocks, metrics,
bad input. The ledger always adds up: initial = current + reserved + sold + allocated."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADMIN, SERVICE
from tests.coupons.support import Client, count_rows
from tests.fixtures.factories import flash_sale_payload
from tests.orders.support import create_product, get


def _adds_up(product: dict[str, Any]) -> bool:
    parts = ("current_stock", "reserved", "sold", "allocated_to_flash_sales")
    return sum(product[p] for p in parts) == product["initial_stock"]


async def test_create_read_and_list(shop: Client) -> None:
    created = await create_product(shop, name="Kettle", price="24.90", stock=12)
    assert (created["name"], created["price"], created["current_stock"]) == ("Kettle", "24.90", 12)
    assert created["initial_stock"] == 12 and created["flash_sale_active"] is False
    assert await get(shop, f"/api/v1/inventory/{created['id']}") == created
    others = [await create_product(shop) for _ in range(3)]
    page = await get(shop, "/api/v1/inventory?limit=2")
    assert [p["id"] for p in page["items"]] == [others[2]["id"], others[1]["id"]]
    rest = await get(shop, f"/api/v1/inventory?limit=2&cursor={page['next_cursor']}")
    assert [p["id"] for p in rest["items"]] == [others[0]["id"], created["id"]]


async def test_setting_the_stock_moves_the_initial_stock_with_it(shop: Client) -> None:
    product = await create_product(shop, stock=10)
    await shop.post(
        "/api/v1/flash-sales", json=flash_sale_payload(product["id"], quantity=4), headers=ADMIN
    )
    restocked = await shop.put(
        f"/api/v1/inventory/{product['id']}", json={"stock": 50, "price": "1.00"}, headers=ADMIN
    )
    assert restocked.status_code == 200, restocked.text
    body = restocked.json()
    assert (body["current_stock"], body["initial_stock"], body["price"]) == (50, 54, "1.00")
    assert _adds_up(body)
    lowered = await shop.put(f"/api/v1/inventory/{product['id']}", json={"stock": 0}, headers=ADMIN)
    assert (lowered.json()["current_stock"], lowered.json()["initial_stock"]) == (0, 4)
    assert _adds_up(lowered.json())


async def test_metrics_total_the_stock_and_list_low_stock(shop: Client) -> None:
    low = await create_product(shop, stock=2)
    await create_product(shop, stock=500)
    metrics = await get(shop, "/api/v1/inventory/metrics?low_stock_threshold=5", admin=True)
    assert (metrics["products"], metrics["current_stock"], metrics["initial_stock"]) == (
        2,
        502,
        502,
    )
    assert metrics["low_stock_count"] == 1
    assert metrics["low_stock"] == [{"id": low["id"], "name": low["name"], "current_stock": 2}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "price": "1.00"}, "stock"),
        ({"name": "x", "price": "1.00", "stock": -1}, "stock"),
        ({"name": "", "price": "1.00", "stock": 1}, "name"),
        ({"name": "x", "price": "1.001", "stock": 1}, "price"),
        ({"name": "x", "price": "-3", "stock": 1}, "price"),
        ({"name": "x", "price": "1.00", "stock": 1, "colour": "red"}, "colour"),
    ],
)
async def test_bad_products_are_refused_naming_the_field(
    shop: Client, body: dict[str, Any], field: str
) -> None:
    response = await shop.post("/api/v1/inventory", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


async def test_bad_sales_are_refused_and_take_nothing(shop: Client) -> None:
    product = await create_product(shop, stock=10)
    cases = [
        (flash_sale_payload(product["id"], quantity=0), 400, "quantity"),
        (flash_sale_payload(product["id"], per_user_limit=0), 400, "per_user_limit"),
        (
            flash_sale_payload(
                product["id"], starts_at="2030-01-02T00:00:00Z", ends_at="2030-01-01T00:00:00Z"
            ),
            400,
            "ends_at",
        ),
        (flash_sale_payload(product["id"], starts_at="2030-01-01T00:00:00"), 400, "starts_at"),
        (flash_sale_payload(999_999), 404, "product_id"),
        (flash_sale_payload(product["id"], quantity=11), 409, "quantity"),
    ]
    for body, status, field in cases:
        response = await shop.post("/api/v1/flash-sales", json=body, headers=ADMIN)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.text)
    after = await get(shop, f"/api/v1/inventory/{product['id']}")
    assert (after["current_stock"], after["allocated_to_flash_sales"]) == (10, 0)


async def test_writes_need_the_admin_token(shop: Client, settings: Any) -> None:
    body = {"name": "x", "price": "1.00", "stock": 1}
    assert (await shop.post("/api/v1/inventory", json=body, headers=SERVICE)).status_code == 403
    assert (await shop.post("/api/v1/inventory", json=body)).status_code == 401
    assert (await shop.get("/api/v1/inventory/metrics", headers=SERVICE)).status_code == 403
    assert await count_rows(settings, "products") == 0


async def test_unknown_product_is_404(shop: Client) -> None:
    response = await shop.get("/api/v1/inventory/424242", headers=SERVICE)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "product_not_found"
    put = await shop.put("/api/v1/inventory/424242", json={"stock": 1}, headers=ADMIN)
    assert put.status_code == 404
