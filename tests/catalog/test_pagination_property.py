"""Property: walking every cursor page returns each matching product exactly once, in the
sort order, also when products are inserted between pages (hypothesis draws the prices,
the sort, the page size, the filters and where the inserts happen)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.catalog.support import listing, product, seller
from tests.coupons.support import Client

SORTS = {
    "newest": lambda p: (-p["id"],),
    "price_asc": lambda p: (Decimal(p["price"]), p["id"]),
    "price_desc": lambda p: (-Decimal(p["price"]), -p["id"]),
}


@st.composite
def walks(draw: st.DrawFn) -> dict[str, Any]:
    prices = draw(st.lists(st.integers(0, 6), min_size=0, max_size=14))  # many ties
    return {
        "prices": prices,
        "sort": draw(st.sampled_from(sorted(SORTS))),
        "limit": draw(st.integers(1, 5)),
        "band": draw(st.none() | st.tuples(st.integers(0, 3), st.integers(3, 6))),
        # (after how many pages, the new product's price)
        "inserts": draw(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), max_size=3)),
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=walks())
async def test_a_cursor_walk_sees_each_match_exactly_once(
    shop: Client, case: dict[str, Any]
) -> None:
    # A seller of its own scopes the walk to this example's products.
    owner = (await seller(shop, "walk"))["id"]
    params: dict[str, Any] = {"seller_id": owner, "sort": case["sort"], "limit": case["limit"]}
    if case["band"] is not None:
        params["min_price"], params["max_price"] = case["band"]

    def matches(item: dict[str, Any]) -> bool:
        if case["band"] is None:
            return True
        low, high = case["band"]
        return low <= Decimal(item["price"]) <= high

    existing = [await product(shop, price=f"{p}.00", seller_id=owner) for p in case["prices"]]
    inserted: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        for after, price in case["inserts"]:
            if after == pages:
                inserted.append(await product(shop, price=f"{price}.00", seller_id=owner))
        page = await listing(shop, **params, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        pages += 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)), "a product was served twice"
    key = SORTS[case["sort"]]
    assert [key(item) for item in seen] == sorted(key(item) for item in seen)
    # Every product that existed before the walk and matches was seen.
    assert {p["id"] for p in existing if matches(p)} <= set(ids)
    # Nothing outside the filters, and nothing that does not exist.
    assert all(matches(item) for item in seen)
    assert set(ids) <= {p["id"] for p in existing + inserted}
