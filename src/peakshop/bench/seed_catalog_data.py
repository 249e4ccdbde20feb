"""A realistic catalog and a year of orders, generated deterministically from a seed.

- categories: a two-level tree (12 departments, 8 subcategories each);
- sellers: a long tail (a few sellers own many products: Pareto weights);
- products: log-normal prices (median ~25, from 0.99 to a few thousand), 90% active,
  created over the year before the oldest order;
- orders: spread over the last year with a weekly cycle and growth towards today; the
  product of each line drawn from a long-tail (Zipf, s=1.1) popularity; 1-3 lines of 1-3
  units; 92% confirmed, 5% cancelled, 3% failed.

Everything a table needs is produced here, including each product's sold units (its stock
ledger must add up: the seeder writes them once all orders are out).
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

DAY = 86_400
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
YEAR = 365 * DAY
DEPARTMENTS = (
    "Shoes", "Clothing", "Kitchen", "Garden", "Toys", "Books",
    "Sport", "Electronics", "Beauty", "Office", "Pets", "Travel",
)  # fmt: skip
SUBCATEGORIES = ("Basics", "Premium", "Kids", "Outdoor", "Classic", "New", "Eco", "Pro")
ADJECTIVES = (
    "Blue", "Red", "Light", "Heavy", "Smart", "Classic", "Compact", "Soft", "Bold", "Quiet",
    "Rapid", "Warm", "Cool", "Tiny", "Grand", "Green", "Urban", "Wild", "Silver", "Golden",
)  # fmt: skip
NOUNS = (
    "Runner", "Kettle", "Lamp", "Chair", "Backpack", "Jacket", "Blender", "Notebook", "Mug",
    "Speaker", "Tent", "Helmet", "Brush", "Watch", "Scarf", "Pan", "Drill", "Puzzle",
    "Bottle", "Pillow",
)  # fmt: skip
STATUSES = (("confirmed", 0.92), ("cancelled", 0.05), ("failed", 0.03))


@dataclass
class Catalog:
    categories: list[tuple[int, str, int | None, str]]  # id, name, parent, path
    sellers: list[tuple[int, str, str]]  # id, name, email
    # id, name, price_cents, status, seller, category, created_at (epoch), stock, sold
    products: list[list[object]]
    orders: int = 0
    items: int = 0
    # UTC day number (epoch // DAY) -> [orders, revenue cents, units] of confirmed orders:
    # the roll-up's sales_daily, tallied while the orders are generated.
    daily: dict[int, list[int]] = field(default_factory=dict)
    # (day << 32 | product id) -> units, and -> revenue cents: product_sales_daily. Two
    # dicts of ints are the smallest plain-Python form (a GROUP BY over the order lines
    # in the database takes several times longer than counting here).
    product_units: dict[int, int] = field(default_factory=dict)
    product_revenue: dict[int, int] = field(default_factory=dict)


def make_catalog(*, sellers: int, products: int, seed: int, now: float) -> Catalog:
    rng = random.Random(seed * 7 + 1)
    categories: list[tuple[int, str, int | None, str]] = []
    for department in DEPARTMENTS:
        parent_id = len(categories) + 1
        categories.append((parent_id, department, None, f"/{parent_id}/"))
        for sub in SUBCATEGORIES:
            child_id = len(categories) + 1
            categories.append(
                (child_id, f"{department} {sub}", parent_id, f"/{parent_id}/{child_id}/")
            )
    leaves = [c[0] for c in categories if c[2] is not None]
    seller_rows = [
        (n, f"Seller {n:05d}", f"seller{n:05d}@sellers.example") for n in range(1, sellers + 1)
    ]
    seller_weights = [1 / n**1.16 for n in range(1, sellers + 1)]  # Pareto-like: 80/20
    seller_ids = (
        rng.choices(range(1, sellers + 1), weights=seller_weights, k=products)
        if sellers
        else [None] * products
    )
    product_rows: list[list[object]] = []
    for number in range(1, products + 1):
        price = max(99, min(500_000, int(math.exp(rng.gauss(math.log(2_500), 0.9)))))
        price = price // 10 * 10 - 1 if price > 1_000 else price  # x.x9 prices, mostly
        status = (
            "active" if rng.random() < 0.90 else ("draft" if rng.random() < 0.7 else "archived")
        )
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {number}"
        created = now - 2 * YEAR + rng.random() * YEAR
        stock = rng.randint(0, 500)
        product_rows.append(
            [
                number,
                name,
                price,
                status,
                seller_ids[number - 1],
                rng.choice(leaves),
                created,
                stock,
                0,
            ]
        )
    return Catalog(categories=categories, sellers=seller_rows, products=product_rows)


def _created_times(rng: random.Random, orders: int, *, start: int, end: int) -> array[int]:
    """The orders' creation epochs (whole seconds: stamps become two table lookups, see
    seed_catalog_store), oldest first: growth through the year (more orders lately) and a
    weekly cycle. In creation order, as a shop's orders are written: a day's orders then
    lie together in the table, and what reads a day of them (the analytics roll-up) reads
    neighbouring pages, not one page per order (benchmarks/analytics_roll_up_cost.py: a
    day's roll-up reads about three times faster than with the times shuffled)."""
    random_, span = rng.random, end - start
    times = array("q", bytes(8 * orders))
    for number in range(orders):
        created = start + int(math.sqrt(random_()) * span)
        weekday = (created // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        if weekday >= 5 and random_() < 0.25:
            created -= DAY * (weekday - 4)
        times[number] = created
    return array("q", sorted(times))


OrderRow = tuple[str, str, str, int, int, int]
ItemRow = tuple[str, int, int, int]


def order_stream(
    catalog: Catalog, *, orders: int, users: int, seed: int, now: float
) -> Iterator[tuple[OrderRow, list[ItemRow]]]:
    """Yield (order row, item rows) for ``orders`` orders, oldest first, and fill in the
    products' sold units. Rows are tuples of plain values: (id, user, status, subtotal,
    total, created epoch) and (order id, product id, quantity, unit price)."""
    rng = random.Random(seed * 7 + 2)
    count = len(catalog.products)
    if count == 0 or orders == 0:
        return
    ranks = list(range(count))
    rng.shuffle(ranks)  # popularity is not the product id order
    cumulative = []
    running = 0.0
    for rank in range(1, count + 1):
        running += 1 / rank**1.1
        cumulative.append(running)
    created_times = _created_times(rng, orders, start=int(now - YEAR), end=int(now) - 60)
    confirmed_below, cancelled_below = STATUSES[0][1], STATUSES[0][1] + STATUSES[1][1]
    random_ = rng.random
    # Plain lists instead of the product rows: this loop runs a million times.
    ids = [int(p[0]) for p in catalog.products]  # type: ignore[call-overload]
    prices = [int(p[2]) for p in catalog.products]  # type: ignore[call-overload]
    sold = [0] * count
    units, revenue, daily = catalog.product_units, catalog.product_revenue, catalog.daily
    picks: list[int] = []
    next_pick = 0
    for number in range(orders):
        if next_pick + 3 > len(picks):  # draw the products of many orders in one call
            picks = rng.choices(ranks, cum_weights=cumulative, k=30_000)
            next_pick = 0
        created = created_times[number]
        lines = 1 if random_() < 0.7 else 2 + (random_() < 0.5)
        picked = picks[next_pick : next_pick + lines]
        next_pick += lines
        draw = random_()
        confirmed = draw < confirmed_below
        status = "confirmed" if confirmed else ("cancelled" if draw < cancelled_below else "failed")
        order_id = f"ord_seed{number:08d}"
        items = []
        subtotal = 0
        for index in dict.fromkeys(picked) if lines > 1 else picked:
            quantity = 1 if random_() < 0.8 else 2 + (random_() < 0.5)
            price = prices[index]
            items.append((order_id, ids[index], quantity, price))
            subtotal += quantity * price
        if confirmed:
            day = created // DAY
            tally = daily.get(day)
            if tally is None:
                tally = daily[day] = [0, 0, 0]
            tally[0] += 1
            tally[1] += subtotal
            for _, product_id, quantity, price in items:
                tally[2] += quantity
                sold[product_id - 1] += quantity
                key = day << 32 | product_id
                units[key] = units.get(key, 0) + quantity
                revenue[key] = revenue.get(key, 0) + quantity * price
        user = f"user_{rng.randrange(users or 1):07d}"
        catalog.items += len(items)
        yield (order_id, user, status, subtotal, subtotal, created), items
    catalog.orders = orders
    for product, units_sold in zip(catalog.products, sold, strict=True):
        product[8] = units_sold


def sales_daily_rows(catalog: Catalog, now: float) -> list[tuple[date, int, int, int, int]]:
    """The roll-up's sales_daily rows of the finished days, from the tally kept while the
    orders were generated: (day, orders, revenue, discount, units). Every day from the
    first order on gets a row, zeros included: a missing day is one the scheduled roll-up
    would compute again."""
    today = int(now) // DAY
    daily = catalog.daily
    if not daily:
        return []
    return [
        (date.fromordinal(EPOCH_ORDINAL + day), *_totals(daily.get(day)))
        for day in range(min(daily), today)
    ]


def _totals(tally: list[int] | None) -> tuple[int, int, int, int]:
    orders, revenue, units = tally or (0, 0, 0)
    return orders, revenue, 0, units


def product_daily_rows(catalog: Catalog, now: float) -> Iterator[tuple[date, int, int, int]]:
    """The roll-up's product_sales_daily rows of the finished days, from the tally."""
    today = int(now) // DAY
    revenue = catalog.product_revenue
    for key, units in sorted(catalog.product_units.items()):
        day = key >> 32
        if day < today:
            yield date.fromordinal(EPOCH_ORDINAL + day), key & 0xFFFFFFFF, units, revenue[key]
