"""Traffic mixes for ``peakshop bench run``, drawn from the seeded database.

- ``storefront`` (simulated users): list pages (departments, subcategories, price ranges,
  name searches, sorts), product details (long-tail popularity), coupon validation
  (the validate scenario's mix of good and bad codes) and order placement (with an
  Idempotency-Key; some with a coupon).
- ``flash-sale-day`` (simulated users): browsing; a sale, created through the admin API
  before the run, opens ``sale_at`` seconds into the run; sessions that arrive after it
  are mostly buyers: the sale's product page, then one or two attempts on
  ``POST /api/v1/flash-sales/{id}/orders`` (each buyer a new user).
- ``validate``: pooled ``POST /api/v1/coupons/validate`` requests, the validate scenario's mix.

Expected answers per endpoint: catalog reads and validation 200; placements 202, or 409 for
an answer the shop gives under load (insufficient stock, sold out, the buyer's cap, a coupon
reason). Anything else (429, 5xx, timeouts) is an error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

import httpx
import msgspec

from peakshop.bench import mix_data
from peakshop.bench.mix import Kind
from peakshop.bench.profiles import Profile, Schedule
from peakshop.bench.seed_catalog_data import ADJECTIVES, NOUNS
from peakshop.bench.workload import SESSION_TOKEN, Endpoint, Request, SessionModel, Workload
from peakshop.config import Settings

MIXES = ("storefront", "flash-sale-day", "validate")
PRODUCTS = "/api/v1/products"
PLACED = frozenset({202, 409})  # admitted, or refused for a reason the shop gives
PRODUCT_POOL = 5_000
ORDER_POOL = 2_000
VALIDATE_POOL = 20_000
SESSION_VALIDATE_POOL = 4_000
SALE_LEAD_S = 5.0  # the run starts this long after the sale is created (senders start up)


@dataclass(kw_only=True)
class MixOptions:
    name: str
    seed: int = 42
    think_time: float = 1.0
    sale_at: float | None = None  # flash-sale-day: seconds into the run (default: see below)
    sale_units: int = 500
    coupon_share: float = 0.4  # storefront sessions that validate a coupon
    order_share: float = 0.15  # ...that place an order
    buyer_share: float = 0.8  # flash-sale-day: sessions after the opening that try to buy

    def check(self) -> None:
        if self.name not in MIXES:
            raise ValueError(f"--mix must be one of {', '.join(MIXES)}")
        if self.think_time < 0 or self.sale_units < 1:
            raise ValueError("--think-time must be >= 0 and --sale-units >= 1")


def _endpoints(service_token: str, sale_id: int | None = None) -> dict[str, Endpoint]:
    auth = {"Authorization": f"Bearer {service_token}"}
    endpoints = {
        "browse": Endpoint(name="browse", method="GET", route=PRODUCTS),
        "product": Endpoint(name="product", method="GET", route=PRODUCTS + "/{id}"),
        "validate": Endpoint(
            name="validate", method="POST", route="/api/v1/coupons/validate", headers=auth
        ),
        "order": Endpoint(
            name="order",
            method="POST",
            route="/api/v1/orders",
            ok_statuses=PLACED,
            headers=auth,
            idempotency_key=True,
        ),
    }
    if sale_id is not None:
        endpoints["sale_status"] = Endpoint(
            name="sale_status", method="GET", route="/api/v1/flash-sales/{id}", headers=auth
        )
        endpoints["flash_order"] = Endpoint(
            name="flash_order",
            method="POST",
            route="/api/v1/flash-sales/{id}/orders",
            ok_statuses=PLACED,
            headers=auth,
            idempotency_key=True,
        )
    return endpoints


class _Builder:
    """Requests by action, indexed into one tuple."""

    def __init__(self, endpoints: Mapping[str, Endpoint], wanted: Sequence[str]) -> None:
        self.endpoints = tuple(endpoints[name] for name in wanted)
        self.index = {name: number for number, name in enumerate(wanted)}
        self.requests: list[Request] = []
        self.pools: dict[str, list[int]] = {name: [] for name in wanted}

    def add(self, action: str, target: str, body: bytes | None = None) -> None:
        self.pools[action].append(len(self.requests))
        self.requests.append(Request(self.index[action], target, body))


def _browse_targets(sample: mix_data.CatalogSample, rng: random.Random) -> list[str]:
    sorts = ("newest", "price_asc", "price_desc")
    targets = [f"{PRODUCTS}?category_id={d}&sort={s}" for d in sample.departments for s in sorts]
    targets += [f"{PRODUCTS}?category_id={c}" for c in sample.subcategories]
    for _ in range(60):
        low = rng.choice((0, 5, 10, 20, 50, 100))
        targets.append(f"{PRODUCTS}?min_price={low}&max_price={low * 2 + 10}&sort=price_asc")
    targets += [f"{PRODUCTS}?q={word.lower()}" for word in (*ADJECTIVES, *NOUNS)]
    targets += [f"{PRODUCTS}?seller_id={s}" for s in sample.sellers[:20]]
    targets += [f"{PRODUCTS}?category_id={d}&page=2&limit=20" for d in sample.departments]
    return targets


def _popular(ids: Sequence[int], rng: random.Random, size: int) -> list[int]:
    """``size`` draws from ``ids`` with a long-tail (Zipf, s=1.1) popularity."""
    ranked = list(ids)
    rng.shuffle(ranked)
    weights = list(accumulate(1 / rank**1.1 for rank in range(1, len(ranked) + 1)))
    return rng.choices(ranked, cum_weights=weights, k=size)


def _catalog_requests(
    builder: _Builder, sample: mix_data.CatalogSample, rng: random.Random
) -> None:
    for target in _browse_targets(sample, rng):
        builder.add("browse", target)
    for pid in _popular([pid for pid, _ in sample.products], rng, PRODUCT_POOL):
        builder.add("product", f"{PRODUCTS}/{pid}")


def _order_body(user: str, product: int, coupon: str | None) -> bytes:
    body: dict[str, object] = {"user_id": user, "items": [{"product_id": product, "quantity": 1}]}
    if coupon is not None:
        body["coupon_code"] = coupon
    return msgspec.json.encode(body)


def storefront(settings: Settings, options: MixOptions) -> Workload:
    rng = random.Random(options.seed)
    sample = mix_data.load_catalog(settings, seed=options.seed)
    coupons = mix_data.load_coupons(settings, size=SESSION_VALIDATE_POOL, seed=options.seed)
    builder = _Builder(
        _endpoints(settings.service_token), ("browse", "product", "validate", "order")
    )
    _catalog_requests(builder, sample, rng)
    for item in coupons.items:
        builder.add("validate", "/api/v1/coupons/validate", item.body())
    valid = [i for i in coupons.items if i.kind in (Kind.VALID_USER, Kind.VALID_WINDOW)]
    stocked = _popular(sample.in_stock, rng, ORDER_POOL)
    for number, product in enumerate(stocked):
        # Three orders in ten carry a coupon that is valid for their user.
        if valid and number % 10 < 3:
            item = rng.choice(valid)
            body = _order_body(item.user_id, product, item.code)
        else:
            body = _order_body(rng.choice(coupons.items).user_id, product, None)
        builder.add("order", "/api/v1/orders", body)
    return Workload(
        name="storefront",
        endpoints=builder.endpoints,
        requests=tuple(builder.requests),
        sessions=SessionModel(
            script=storefront_script,
            pools={k: tuple(v) for k, v in builder.pools.items()},
            think_time_s=options.think_time,
            params={"coupon_share": options.coupon_share, "order_share": options.order_share},
        ),
        details={"catalog": sample.rows, "coupons": coupons.database, "seed": options.seed},
    )


def storefront_script(
    rng: random.Random,
    arrival_s: float,
    pools: Mapping[str, Sequence[int]],
    params: Mapping[str, float],
) -> list[int]:
    """Browse 1-3 list pages, look at 1-3 products, maybe validate a coupon, maybe order."""
    actions = [rng.choice(pools["browse"]) for _ in range(rng.randint(1, 3))]
    actions += [rng.choice(pools["product"]) for _ in range(rng.randint(1, 3))]
    if "validate" in pools and rng.random() < params.get("coupon_share", 0.0):
        actions.append(rng.choice(pools["validate"]))
    if "order" in pools and rng.random() < params.get("order_share", 0.0):
        actions.append(rng.choice(pools["order"]))
    return actions


def default_sale_at(profile: Profile) -> float:
    """When the sale opens by default: at the start of the first phase called spike or peak
    (or the profile's highest-rate phase when it has several), else a third into the run."""
    schedule = Schedule(profile)
    for number, phase in enumerate(profile.phases):
        if phase.name.lower() in ("spike", "peak", "storm", "sale"):
            return schedule.phase_starts_s[number]
    if len(profile.phases) > 1:
        best = max(range(len(profile.phases)), key=lambda n: profile.phases[n].end_rate)
        if best > 0:
            return schedule.phase_starts_s[best]
    return profile.duration / 3


async def create_scheduled_sale(
    url: str, admin_token: str, *, units: int, starts_at: datetime, ends_at: datetime
) -> tuple[int, int]:
    """A product with ``units`` in stock and a sale of all of them (per-user cap 1) that
    opens at ``starts_at``, made through the admin API. Returns (product id, sale id)."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        product = await client.post(
            "/api/v1/inventory",
            json={"name": f"flash-sale-day {starts_at:%H:%M:%S}", "price": "49.99", "stock": units},
        )
        product.raise_for_status()
        product_id = int(product.json()["id"])
        sale = await client.post(
            "/api/v1/flash-sales",
            json={
                "product_id": product_id,
                "price": "19.99",
                "quantity": units,
                "starts_at": starts_at.isoformat(),
                "ends_at": ends_at.isoformat(),
                "per_user_limit": 1,
            },
        )
        sale.raise_for_status()
        return product_id, int(sale.json()["id"])


def flash_sale_day(
    settings: Settings, options: MixOptions, *, url: str, profile: Profile, start_wall: float
) -> Workload:
    """Browsing, then a sale opening at ``sale_at`` s after ``start_wall`` (epoch seconds:
    the run must start then) and a checkout storm on it."""
    rng = random.Random(options.seed)
    sample = mix_data.load_catalog(settings, seed=options.seed)
    sale_at = options.sale_at if options.sale_at is not None else default_sale_at(profile)
    opens = datetime.fromtimestamp(start_wall + sale_at, UTC)
    closes = datetime.fromtimestamp(start_wall + profile.duration, UTC) + timedelta(hours=1)
    product_id, sale_id = asyncio.run(
        create_scheduled_sale(
            url, settings.admin_token, units=options.sale_units, starts_at=opens, ends_at=closes
        )
    )
    wanted = ("browse", "product", "sale_status", "flash_order")
    builder = _Builder(_endpoints(settings.service_token, sale_id), wanted)
    _catalog_requests(builder, sample, rng)
    builder.add("product", f"{PRODUCTS}/{product_id}")  # the sale's product: pools["sale_page"]
    sale_page = builder.pools["product"][-1]
    builder.add("sale_status", f"/api/v1/flash-sales/{sale_id}")
    buyer = b'{"user_id":"fsd-' + SESSION_TOKEN + b'","quantity":1}'
    builder.add("flash_order", f"/api/v1/flash-sales/{sale_id}/orders", buyer)
    pools = {k: tuple(v) for k, v in builder.pools.items()}
    return Workload(
        name="flash-sale-day",
        endpoints=builder.endpoints,
        requests=tuple(builder.requests),
        sessions=SessionModel(
            script=flash_sale_day_script,
            pools={**pools, "sale_page": (sale_page,)},
            think_time_s=options.think_time,
            params={"sale_at_s": sale_at, "buyer_share": options.buyer_share},
        ),
        details={
            "catalog": sample.rows,
            "sale": {
                "id": sale_id,
                "product_id": product_id,
                "units": options.sale_units,
                "per_user_limit": 1,
                "opens_at": opens.isoformat(),
                "opens_after_s": sale_at,
            },
            "seed": options.seed,
        },
    )


def flash_sale_day_script(
    rng: random.Random,
    arrival_s: float,
    pools: Mapping[str, Sequence[int]],
    params: Mapping[str, float],
) -> list[int]:
    """Before the opening: browse, and now and then check whether the sale is open. After:
    most sessions go to the sale's page and try to buy (a third of them twice)."""
    if arrival_s >= params["sale_at_s"] and rng.random() < params["buyer_share"]:
        attempts = 2 if rng.random() < 1 / 3 else 1
        return [pools["sale_page"][0], *[pools["flash_order"][0]] * attempts]
    actions = [rng.choice(pools["browse"]) for _ in range(rng.randint(1, 2))]
    actions += [rng.choice(pools["product"]) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        actions.append(pools["sale_status"][0])
    return actions


def validate(settings: Settings, options: MixOptions) -> Workload:
    coupons = mix_data.load_coupons(settings, size=VALIDATE_POOL, seed=options.seed)
    endpoint = _endpoints(settings.service_token)["validate"]
    requests = tuple(Request(0, endpoint.route, item.body()) for item in coupons.items)
    return Workload(
        name="validate",
        endpoints=(endpoint,),
        requests=requests,
        pool=tuple(range(len(requests))),
        details={"database": coupons.database, "pool": coupons.counts(), "seed": options.seed},
    )
