"""What the traffic mixes draw from, read from the seeded database before a run: the
category tree, a sample of active products with their stock, sellers, and (through the
validate scenario's mix) coupons and users."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import sqlalchemy as sa

from peakshop.bench import mix as coupon_mix
from peakshop.bench.mix import MixError
from peakshop.catalog.models import categories, products, sellers
from peakshop.config import Settings
from peakshop.db import Database

PRODUCT_WINDOWS = 60  # random windows of consecutive ids: sampling a big table stays cheap
PRODUCTS_PER_WINDOW = 100
SEED_HINT = "peakshop seed --sellers 200 --products 20000"


@dataclass(kw_only=True)
class CatalogSample:
    departments: list[int]  # top-level categories
    subcategories: list[int]
    sellers: list[int]
    products: list[tuple[int, int]]  # (id, available units), active products only
    product_count: int
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def in_stock(self) -> list[int]:
        return [pid for pid, available in self.products if available > 0]


async def _read_catalog(settings: Settings, *, seed: int) -> CatalogSample:
    db = Database(settings)
    rng = random.Random(seed)
    try:
        async with db.read() as conn:
            tree = (await conn.execute(sa.select(categories.c.id, categories.c.parent_id))).all()
            seller_ids = (
                (await conn.execute(sa.select(sellers.c.id).order_by(sellers.c.id).limit(1000)))
                .scalars()
                .all()
            )
            low, high = (
                await conn.execute(
                    sa.select(sa.func.min(products.c.id), sa.func.max(products.c.id))
                )
            ).one()
            count = (await conn.scalar(sa.select(sa.func.count()).select_from(products))) or 0
            sample: dict[int, int] = {}
            for _ in range(PRODUCT_WINDOWS if count else 0):
                start = rng.randint(int(low), int(high))
                query = (
                    sa.select(products.c.id, products.c.available)
                    .where(products.c.id >= start, products.c.status == "active")
                    .order_by(products.c.id)
                    .limit(PRODUCTS_PER_WINDOW)
                )
                sample.update({int(pid): int(units) for pid, units in await conn.execute(query)})
    finally:
        await db.dispose()
    return CatalogSample(
        departments=sorted(int(cid) for cid, parent in tree if parent is None),
        subcategories=sorted(int(cid) for cid, parent in tree if parent is not None),
        sellers=[int(s) for s in seller_ids],
        products=sorted(sample.items()),
        product_count=int(count),
        rows={"categories": len(tree), "products": int(count), "products_sampled": len(sample)},
    )


def load_catalog(settings: Settings, *, seed: int) -> CatalogSample:
    sample = asyncio.run(_read_catalog(settings, seed=seed))
    if not sample.products or not sample.departments:
        raise MixError(f"the database has no catalog (seed one first, e.g. {SEED_HINT})")
    if not sample.in_stock:
        raise MixError("no sampled product has stock left: seed the catalog again (--reset)")
    return sample


def load_coupons(settings: Settings, *, size: int, seed: int) -> coupon_mix.Mix:
    """The validate scenario's mix: coupon codes of every kind, with users that fit."""
    return coupon_mix.load(settings, size=size, weights=coupon_mix.DEFAULT_WEIGHTS, seed=seed)
