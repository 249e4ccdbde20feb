"""Helpers of the catalog tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN
from tests.coupons.support import Client
from tests.fixtures.factories import catalog_product


async def post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def seller(client: Client, name: str = "Acme") -> dict[str, Any]:
    return await post(client, "/api/v1/sellers", {"name": name})


async def category(client: Client, name: str, parent_id: int | None = None) -> dict[str, Any]:
    return await post(client, "/api/v1/categories", {"name": name, "parent_id": parent_id})


async def product(client: Client, **overrides: Any) -> dict[str, Any]:
    return await post(client, "/api/v1/products", catalog_product(**overrides))


async def listing(client: Client, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/products", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def walk(client: Client, **params: Any) -> list[int]:
    """Every product id of a cursor walk, in order."""
    ids: list[int] = []
    cursor = None
    while True:
        page = await listing(client, **params, **({"cursor": cursor} if cursor else {}))
        ids += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids
