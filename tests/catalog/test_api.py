"""The catalog through the HTTP API on every backend: CRUD, filters, sorts, both kinds of
pagination, the fixed number of queries per page, cache freshness after writes, the audit
trail, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from tests.catalog.support import category, listing, product, seller, walk
from tests.conftest import ADMIN, SERVICE
from tests.coupons.support import Client, eventually


async def test_products_come_with_seller_category_and_stock(shop: Client) -> None:
    acme = await seller(shop, "Acme")
    shoes = await category(shop, "Shoes")
    created = await product(
        shop,
        name="Trail runner",
        price="89.90",
        seller_id=acme["id"],
        category_id=shoes["id"],
        image_urls=["https://img.example/1.jpg"],
        stock=7,
    )
    got = (await shop.get(f"/api/v1/products/{created['id']}")).json()
    assert got == created
    assert got["seller"] == {"id": acme["id"], "name": "Acme"}
    assert got["category"] == {"id": shoes["id"], "name": "Shoes", "path": f"/{shoes['id']}/"}
    assert (got["price"], got["currency"], got["status"], got["current_stock"]) == (
        "89.90",
        "EUR",
        "active",
        7,
    )


async def test_filters_and_sorts(shop: Client) -> None:
    acme, other = await seller(shop, "Acme"), await seller(shop, "Other")
    top = await category(shop, "Sport")
    sub = await category(shop, "Running", top["id"])
    elsewhere = await category(shop, "Kitchen")
    a = await product(
        shop, name="Red Shoe", price="30.00", seller_id=acme["id"], category_id=sub["id"]
    )
    b = await product(
        shop, name="Blue shoe", price="10.00", seller_id=other["id"], category_id=top["id"]
    )
    c = await product(
        shop, name="Pan", price="20.00", seller_id=acme["id"], category_id=elsewhere["id"]
    )
    d = await product(shop, name="Draft shoe", price="5.00", status="draft", category_id=top["id"])

    def ids(page: dict[str, Any]) -> list[int]:
        return [item["id"] for item in page["items"]]

    assert ids(await listing(shop)) == [c["id"], b["id"], a["id"]]  # newest first, active only
    assert ids(await listing(shop, category_id=top["id"])) == [b["id"], a["id"]]  # + descendants
    assert ids(await listing(shop, category_id=sub["id"])) == [a["id"]]
    assert ids(await listing(shop, seller_id=acme["id"])) == [c["id"], a["id"]]
    assert ids(await listing(shop, status="draft")) == [d["id"]]
    assert ids(await listing(shop, min_price="15", max_price="30")) == [c["id"], a["id"]]
    assert ids(await listing(shop, q="SHOE")) == [b["id"], a["id"]]
    assert ids(await listing(shop, sort="price_asc")) == [b["id"], c["id"], a["id"]]
    assert ids(await listing(shop, sort="price_desc")) == [a["id"], c["id"], b["id"]]
    assert ids(await listing(shop, q="%")) == []  # LIKE wildcards are literal


async def test_offset_pages_carry_the_total(shop: Client) -> None:
    made = [await product(shop, price=f"{n}.00") for n in range(1, 8)]
    first = await listing(shop, page=1, limit=3, sort="price_asc")
    assert (first["page"], first["limit"], first["total"]) == (1, 3, 7)
    assert [i["id"] for i in first["items"]] == [p["id"] for p in made[:3]]
    last = await listing(shop, page=3, limit=3, sort="price_asc")
    assert [i["id"] for i in last["items"]] == [made[6]["id"]]
    assert "next_cursor" not in last


async def test_cursor_walk_with_inserts_between_pages(shop: Client) -> None:
    before = [await product(shop, price="5.00") for _ in range(5)]
    page = await listing(shop, limit=2, sort="price_asc")
    seen = [item["id"] for item in page["items"]]
    newcomer = await product(shop, price="5.00")  # same price: ordered by id, after the cursor
    cursor = page["next_cursor"]
    while cursor:
        page = await listing(shop, limit=2, sort="price_asc", cursor=cursor)
        seen += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
    assert seen == [p["id"] for p in before] + [newcomer["id"]]
    assert len(seen) == len(set(seen))


@pytest.fixture
def query_counter(shop: Client) -> Iterator[list[str]]:
    """The catalog's SQL statements the app runs on its read engines (background work such as
    the job queue's polling runs on them too and is left out)."""
    runtime = shop.app.state.runtime
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        tables = ("products", "sellers", "categories")
        if any(f"FROM {table}" in statement for table in tables):
            statements.append(statement)

    # Lists are read through Database.run_read: its own engines on SQLite.
    engines = [
        runtime.db.read_engine.sync_engine,
        runtime.db.sync_read_engine,
        runtime.db.inline_read_engine,
    ]
    engines = [engine for engine in engines if engine is not None]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    yield statements
    for engine in engines:
        event.remove(engine, "before_cursor_execute", count)


async def test_a_page_costs_the_same_queries_whatever_its_size(
    shop: Client, query_counter: list[str]
) -> None:
    sellers = [await seller(shop, f"S{n}") for n in range(4)]
    cats = [await category(shop, f"C{n}") for n in range(4)]
    for n in range(40):
        await product(shop, seller_id=sellers[n % 4]["id"], category_id=cats[n % 4]["id"])
    counts = []
    for limit in (2, 40):
        query_counter.clear()
        page = await listing(shop, limit=limit, category_id=cats[0]["id"])
        assert all(item["seller"] and item["category"] for item in page["items"])
        counts.append(len(query_counter))
    assert 2 <= counts[0] == counts[1] <= 4  # category path, page (+ sellers, categories)


async def test_a_write_is_seen_at_once_by_the_next_read(shop: Client) -> None:
    made = await product(shop, name="Old name", price="1.00")
    assert (await listing(shop))["items"][0]["name"] == "Old name"  # now cached
    assert (await shop.get(f"/api/v1/products/{made['id']}")).json()["name"] == "Old name"
    changed = await shop.patch(
        f"/api/v1/products/{made['id']}", json={"name": "New name"}, headers=ADMIN
    )
    assert changed.status_code == 200
    assert (await listing(shop))["items"][0]["name"] == "New name"
    assert (await shop.get(f"/api/v1/products/{made['id']}")).json()["name"] == "New name"
    restocked = await shop.put(f"/api/v1/inventory/{made['id']}", json={"stock": 99}, headers=ADMIN)
    assert restocked.status_code == 200
    assert (await shop.get(f"/api/v1/products/{made['id']}")).json()["current_stock"] == 99
    archived = await shop.delete(f"/api/v1/products/{made['id']}", headers=ADMIN)
    assert archived.json()["status"] == "archived"
    assert (await listing(shop))["items"] == []


async def test_a_repeated_list_is_answered_before_parsing_and_dropped_by_writes(
    shop: Client,
) -> None:
    made = await product(shop, name="First", price="2.00")
    params = {"limit": 5, "sort": "price_asc"}
    first = await shop.get("/api/v1/products", params=params)
    again = await shop.get("/api/v1/products", params=params)  # the raw-query fast path
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["content-type"].startswith("application/json")
    assert again.headers["x-request-id"]
    changed = await shop.patch(
        f"/api/v1/products/{made['id']}", json={"name": "Second"}, headers=ADMIN
    )
    assert changed.status_code == 200
    after = await shop.get("/api/v1/products", params=params)
    assert [item["name"] for item in after.json()["items"]] == ["Second"]
    # A refused query is never stored, under any key: it is refused every time.
    for _ in range(2):
        bad = await shop.get("/api/v1/products", params={"limit": 0})
        assert bad.status_code == 400
        assert bad.json()["error"]["field"] == "limit"


async def test_seller_and_category_changes_reach_cached_products(shop: Client) -> None:
    acme = await seller(shop, "Acme")
    top = await category(shop, "Top")
    made = await product(shop, seller_id=acme["id"], category_id=top["id"])
    await shop.get(f"/api/v1/products/{made['id']}")
    await shop.patch(f"/api/v1/sellers/{acme['id']}", json={"name": "Acme 2"}, headers=ADMIN)
    await shop.patch(f"/api/v1/categories/{top['id']}", json={"name": "Top 2"}, headers=ADMIN)
    got = (await shop.get(f"/api/v1/products/{made['id']}")).json()
    assert (got["seller"]["name"], got["category"]["name"]) == ("Acme 2", "Top 2")


async def test_moving_a_category_moves_its_subtree(shop: Client) -> None:
    a, b = await category(shop, "A"), await category(shop, "B")
    child = await category(shop, "A1", a["id"])
    grandchild = await category(shop, "A11", child["id"])
    moved = await shop.patch(
        f"/api/v1/categories/{child['id']}", json={"parent_id": b["id"]}, headers=ADMIN
    )
    assert moved.json()["path"] == f"/{b['id']}/{child['id']}/"
    again = (await shop.get(f"/api/v1/categories/{grandchild['id']}")).json()
    assert again["path"] == f"/{b['id']}/{child['id']}/{grandchild['id']}/"
    cycle = await shop.patch(
        f"/api/v1/categories/{b['id']}", json={"parent_id": grandchild["id"]}, headers=ADMIN
    )
    assert cycle.status_code == 400 and cycle.json()["error"]["field"] == "parent_id"
    busy = await shop.delete(f"/api/v1/categories/{b['id']}", headers=ADMIN)
    assert busy.status_code == 409


async def test_every_admin_write_is_audited(shop: Client) -> None:
    acme = await seller(shop, "Acme")
    made = await product(shop, name="Before", seller_id=acme["id"])
    await shop.patch(f"/api/v1/products/{made['id']}", json={"name": "After"}, headers=ADMIN)

    async def entries() -> list[dict[str, Any]] | None:
        page = (
            await shop.get(
                "/api/v1/audit", params={"subject": f"product:{made['id']}"}, headers=ADMIN
            )
        ).json()
        return page["items"] if len(page["items"]) == 2 else None

    update, create = await eventually(entries, within=10)
    assert (create["action"], create["before"], create["after"]["name"]) == (
        "product.create",
        None,
        "Before",
    )
    assert (update["action"], update["actor"]) == ("product.update", "admin")
    assert (update["before"]["name"], update["after"]["name"]) == ("Before", "After")
    everything = (await shop.get("/api/v1/audit", headers=ADMIN)).json()["items"]
    assert "seller.create" in {entry["action"] for entry in everything}
    assert (await shop.get("/api/v1/audit", headers=SERVICE)).status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"min_price": "20", "max_price": "10"}, "min_price"),
        ({"min_price": "abc"}, "min_price"),
        ({"category_id": 999_999}, "category_id"),
        ({"sort": "random"}, "sort"),
        ({"status": "gone"}, "status"),
        ({"page": 0}, "page"),
    ],
)
async def test_bad_listing_parameters_are_named(
    shop: Client, params: dict[str, Any], field: str
) -> None:
    response = await shop.get("/api/v1/products", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


async def test_a_cursor_of_other_filters_is_refused(shop: Client) -> None:
    for _ in range(3):
        await product(shop)
    cursor = (await listing(shop, limit=1))["next_cursor"]
    other = await shop.get("/api/v1/products", params={"cursor": cursor, "sort": "price_asc"})
    assert other.status_code == 400 and other.json()["error"]["field"] == "cursor"
    assert await walk(shop, limit=1)


async def test_bad_product_writes(shop: Client) -> None:
    cases = [
        ({"name": "x", "price": "1.00", "seller_id": 999_999}, 400, "seller_id"),
        ({"name": "x", "price": "1.00", "category_id": 999_999}, 400, "category_id"),
        ({"name": "x", "price": "1.00", "currency": "euro"}, 400, "currency"),
        ({"name": "x", "price": "1.00", "image_urls": ["ftp://x"]}, 400, "image_urls[0]"),
        ({"name": "x", "price": "1.001"}, 400, "price"),
        ({"name": "x", "price": "1.00", "status": "deleted"}, 400, "status"),
    ]
    for body, status, field in cases:
        response = await shop.post("/api/v1/products", json=body, headers=ADMIN)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.text)
    assert (await listing(shop))["items"] == []
    assert (
        await shop.post("/api/v1/products", json={"name": "x", "price": "1"}, headers=SERVICE)
    ).status_code == 403


async def test_unknown_things_are_404(shop: Client) -> None:
    for path in ("/api/v1/products/424242", "/api/v1/sellers/424242", "/api/v1/categories/424242"):
        response = await shop.get(path)
        assert response.status_code == 404, path
