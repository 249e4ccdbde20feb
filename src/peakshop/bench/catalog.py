"""The catalog scenario: browse traffic against a seeded catalog.

1. cached first page: ``GET /api/v1/products`` in a closed loop, against peakshop and the
   minimal app (the framework's ceiling, a pre-encoded page from a dict), in one session;
2. browse mix: first pages of every department and sort, their second pages, and product
   details drawn from a long-tail popularity (Zipf) over all products; the cache hit rate
   is read from peakshop's own counters before and after;
3. uncached list: open loop at ``--uncached-rate`` on list pages that no one asked for
   before (a distinct price floor each), so every one is computed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from rich.console import Console

from peakshop.bench import report
from peakshop.bench.report import Target
from peakshop.bench.runner import Runner
from peakshop.bench.servers import Server, attach, spawn_minimal, spawn_peakshop
from peakshop.catalog.models import categories, products
from peakshop.config import Settings
from peakshop.db import Database

MIN_RATIO_TO_MINIMAL = 0.70
MIN_HIT_RATE = 0.95
MAX_UNCACHED_P99_MS = 20.0
FIRST_PAGE = "/api/v1/products"


@dataclass(kw_only=True)
class CatalogOptions:
    url: str | None = None
    spawn: bool = False
    compare_minimal: bool = False
    minimal_app: Path = Path("benchmarks/minimal_app.py")
    duration: float = 10.0
    concurrency: int = 100
    uncached_rate: float = 500.0
    uncached_duration: float = 20.0
    procs: int = 1
    seed: int = 42
    json_path: Path | None = None

    def check(self) -> None:
        if self.spawn == (self.url is not None):
            raise ValueError("give exactly one of --url and --spawn")


async def _catalog_shape(settings: Settings) -> tuple[int, list[int]]:
    db = Database(settings)
    try:
        async with db.read() as conn:
            count = (await conn.execute(sa.select(sa.func.max(products.c.id)))).scalar() or 0
            tops = (
                await conn.execute(
                    sa.select(categories.c.id).where(categories.c.parent_id.is_(None))
                )
            ).scalars()
            return int(count), [int(t) for t in tops]
    finally:
        await db.dispose()


def browse_paths(
    *, products: int, departments: list[int], second_pages: list[str], seed: int, size: int
) -> list[bytes]:
    rng = random.Random(seed)
    firsts = [
        f"{FIRST_PAGE}?category_id={d}&sort={s}"
        for d in departments
        for s in ("newest", "price_asc", "price_desc")
    ]
    ranks = list(range(1, products + 1))
    rng.shuffle(ranks)
    details = rng.choices(
        ranks,
        cum_weights=list(_cumulative(products, 1.1)),
        k=size,
    )
    paths = []
    for number in range(size):
        draw = rng.random()
        if draw < 0.35:
            paths.append(rng.choice(firsts))
        elif draw < 0.5 and second_pages:
            paths.append(rng.choice(second_pages))
        else:
            paths.append(f"/api/v1/products/{details[number]}")
    return [path.encode() for path in paths]


def _cumulative(count: int, exponent: float) -> Iterator[float]:
    running = 0.0
    for rank in range(1, count + 1):
        running += 1 / rank**exponent
        yield running


async def _second_pages(url: str, departments: list[int]) -> list[str]:
    pages = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for department in departments:
            for sort in ("newest", "price_asc", "price_desc"):
                query = f"category_id={department}&sort={sort}"
                first = (await client.get(f"{FIRST_PAGE}?{query}")).json()
                if first.get("next_cursor"):
                    pages.append(f"{FIRST_PAGE}?{query}&cursor={first['next_cursor']}")
    return pages


async def cache_counts(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("peakshop_cache_requests_total{"):
            labels, _, value = line.partition("} ")
            counts[labels] = counts.get(labels, 0.0) + float(value)
    return counts


def _hit_rate(
    before: dict[str, float], after: dict[str, float]
) -> tuple[float | None, dict[str, float]]:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    l1 = {k: v for k, v in delta.items() if 'level="l1"' in k}
    hits = sum(v for k, v in l1.items() if 'result="hit"' in k)
    total = sum(l1.values())
    return (hits / total if total else None), delta


@contextlib.contextmanager
def _servers(options: CatalogOptions) -> Iterator[tuple[Server, Server | None]]:
    with contextlib.ExitStack() as stack:
        peakshop = (
            stack.enter_context(spawn_peakshop())
            if options.spawn
            else attach("peakshop", options.url or "")
        )
        minimal = (
            stack.enter_context(spawn_minimal(options.minimal_app))
            if options.compare_minimal
            else None
        )
        yield peakshop, minimal


def run(options: CatalogOptions, *, settings: Settings, console: Console) -> int:
    options.check()
    count, departments = asyncio.run(_catalog_shape(settings))
    if count < 1_000:
        raise ValueError(
            "the catalog is empty or tiny: seed one first, e.g. "
            "peakshop seed --sellers 1000 --products 100000 --orders 1000000"
        )
    started, machine = report.now_iso(), report.machine_info()
    targets: list[Target] = []
    runs: list[dict[str, Any]] = []
    with _servers(options) as (peakshop, minimal):

        def runner(paths: list[bytes]) -> Runner:
            return Runner(
                console=console, bodies=paths, token="", procs=options.procs, method="GET", path=""
            )

        first_page = runner([FIRST_PAGE.encode()])
        for server in filter(None, (peakshop, minimal)):
            first_page.measure(
                "warm-up", server, mode="closed", requests=2_000, concurrency=50, keep=False
            )
        ours = first_page.measure(
            "cached first page", peakshop, mode="closed", duration=options.duration,
            concurrency=options.concurrency,
        )  # fmt: skip
        runs.append(ours)
        if minimal is not None:
            theirs = first_page.measure(
                "first page", minimal, mode="closed", duration=options.duration,
                concurrency=options.concurrency,
            )  # fmt: skip
            runs.append(theirs)
            targets.append(
                Target(
                    name="cached_list_ratio",
                    description="cached first page: peakshop / minimal app",
                    measured=ours["throughput_rps"] / theirs["throughput_rps"],
                    limit=MIN_RATIO_TO_MINIMAL,
                    unit="x",
                    higher_is_better=True,
                    note=f"{ours['throughput_rps']:,.0f} / {theirs['throughput_rps']:,.0f} req/s",
                    from_valid_runs=ours["valid"] and theirs["valid"],
                )
            )
        seconds = asyncio.run(_second_pages(peakshop.url, departments))
        browse = runner(
            browse_paths(
                products=count, departments=departments, second_pages=seconds,
                seed=options.seed, size=50_000,
            )
        )  # fmt: skip
        browse.measure(
            "warm-up",
            peakshop,
            mode="closed",
            duration=options.duration,
            concurrency=50,
            keep=False,
        )
        before = asyncio.run(cache_counts(peakshop.url))
        mix = browse.measure(
            "browse mix", peakshop, mode="closed", duration=options.duration,
            concurrency=options.concurrency,
        )  # fmt: skip
        rate, delta = _hit_rate(before, asyncio.run(cache_counts(peakshop.url)))
        mix["cache_requests"] = delta
        runs.append(mix)
        targets.append(
            Target(
                name="cache_hit_rate",
                description="browse mix: L1 cache hit rate (steady state)",
                measured=rate,
                limit=MIN_HIT_RATE,
                unit="",
                higher_is_better=True,
                note="after a warm-up of the same mix; from peakshop's own counters",
                from_valid_runs=mix["valid"],
            )
        )
        uncached = runner(
            [
                f"{FIRST_PAGE}?min_price={n // 100}.{n % 100:02d}&sort=price_asc".encode()
                for n in range(1, int(options.uncached_rate * options.uncached_duration) + 2)
            ]
        )
        cold = uncached.measure(
            "uncached list", peakshop, mode="open", rate=options.uncached_rate,
            duration=options.uncached_duration, concurrency=256,
        )  # fmt: skip
        runs.append(cold)
        targets.append(
            Target(
                name="uncached_list_p99",
                description=f"uncached list, open loop {options.uncached_rate:,.0f}/s: P99",
                measured=cold["latency_ms"]["p99"],
                limit=MAX_UNCACHED_P99_MS,
                unit="ms",
                higher_is_better=False,
                note=f"{count:,} products; every request a new page (a distinct price floor)",
                from_valid_runs=cold["valid"],
            )
        )
    report.print_report(console, runs=runs, targets=targets, extra=[])
    ok = all(t.passed for t in targets) and all(r["valid"] for r in runs)
    if options.json_path is not None:
        report.write_json(
            options.json_path,
            report.scenario_document(
                "catalog",
                started=started,
                machine=machine,
                settings=settings,
                options=options,
                runs=runs,
                targets=targets,
                ok=ok,
                products=count,
            ),
        )
        console.print(f"wrote {options.json_path}")
    return 0 if ok else 1
