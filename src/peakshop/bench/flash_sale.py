"""The flash-sale scenarios: many buyers, one product, a fixed number of units.

Each run creates its own sale through the admin API, sends the attempts (closed loop for
throughput, or open loop at ``--rate`` for latency), waits for the queue to drain the
winners, and reads the verdict from the database: units sold, oversold (must be 0), the
conservation equation, the per-user cap. Optionally the same attempts go, in the same
session, to the minimal app (the framework's ceiling) and, in scaled mode, to the
conventional placement of ``benchmarks/conventional_app.py`` (SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from peakshop.bench import report
from peakshop.bench.flash_sale_check import admission_outcomes, attempts, create_sale, settle
from peakshop.bench.flash_sale_targets import judge_scenario
from peakshop.bench.runner import Runner
from peakshop.bench.servers import (
    Server,
    attach,
    free_port,
    spawn,
    spawn_minimal,
    spawn_peakshop,
)
from peakshop.config import Mode, Settings
from peakshop.inventory.models import flash_sale_buyers, flash_sales
from peakshop.orders.models import orders

SCENARIOS = {
    # name: (units, attempts, buyers)
    "single-unit": (1, 1_000, 1_000),
    "limited": (5, 1_500, 1_500),
    "hyper": (10_000, 50_000, 50_000),
}
PATH = "/api/v1/flash-sales/{sale_id}/orders"
ANSWERS = frozenset({202, 409})  # admitted or refused: both are the service answering
WARMUP_ATTEMPTS = 2_000


@dataclass(kw_only=True)
class FlashSaleOptions:
    scenario: str = "hyper"
    url: str | None = None
    spawn: bool = False
    workers: int = 2  # scaled mode with --spawn: `peakshop worker` processes
    users: int | None = None
    attempts: int | None = None
    rate: float | None = None
    duration: float | None = None
    concurrency: int = 100
    procs: int = 1
    compare_minimal: bool = False
    compare_conventional: bool = False
    minimal_app: Path = Path("benchmarks/minimal_app.py")
    conventional_app: Path = Path("benchmarks/conventional_app.py")
    drain_timeout: float = 120.0
    json_path: Path | None = None
    timeout: float = 30.0
    max_lag_ms: float = 5.0

    def check(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"--scenario must be one of {', '.join(SCENARIOS)}")
        if self.spawn == (self.url is not None):
            raise ValueError("give exactly one of --url and --spawn")

    @property
    def shape(self) -> tuple[int, int, int]:
        units, count, buyers = SCENARIOS[self.scenario]
        count = self.attempts or count
        return units, count, min(self.users or buyers, count)


@contextlib.contextmanager
def _peakshop(options: FlashSaleOptions, settings: Settings) -> Iterator[Server]:
    if not options.spawn:
        assert options.url is not None
        yield attach("peakshop", options.url)
        return
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(spawn_peakshop(env=env))
        if settings.mode is Mode.SCALED:
            for number in range(options.workers):
                stack.enter_context(_spawn_worker(number, env))
        yield server


@contextlib.contextmanager
def _spawn_worker(number: int, env: dict[str, str]) -> Iterator[None]:
    """A `peakshop worker` process (it serves no HTTP: readiness is its start-up line)."""
    handle, log_name = tempfile.mkstemp(prefix=f"bench-worker-{number}-", suffix=".log")
    with os.fdopen(handle, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "peakshop", "worker"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    log_path = Path(log_name)
    try:
        deadline = time.monotonic() + 60
        while b"working the queue" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {number} did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_path.unlink(missing_ok=True)


def _spawn_conventional(app_path: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(app_path.parent), env.get("PYTHONPATH")]))
    command = [sys.executable, str(app_path), "--host", "127.0.0.1", "--port", str(port)]
    return spawn("conventional", command, port=port, env=env)


def _measure(
    runner: Runner, name: str, server: Server, options: FlashSaleOptions, count: int
) -> dict[str, Any]:
    if options.rate is not None:
        return runner.measure(
            name,
            server,
            mode="open",
            rate=options.rate,
            duration=options.duration or count / options.rate,
            concurrency=max(options.concurrency, 256),
        )
    return runner.measure(
        name, server, mode="closed", requests=count, concurrency=options.concurrency
    )


def _runner(
    options: FlashSaleOptions,
    console: Console,
    token: str,
    sale_id: int,
    count: int,
    users: int,
    tag: str,
) -> Runner:
    bodies, headers = attempts(sale_id, count=count, users=users, tag=tag)
    return Runner(
        console=console,
        bodies=bodies,
        body_headers=headers,
        ok_statuses=ANSWERS,
        token=token,
        procs=options.procs,
        timeout=options.timeout,
        max_lag_ms=options.max_lag_ms,
        path=PATH.format(sale_id=sale_id),
    )


def run(options: FlashSaleOptions, *, settings: Settings, console: Console) -> int:
    options.check()
    if options.compare_conventional and settings.is_sqlite:
        raise ValueError("--compare-conventional needs PostgreSQL (PEAKSHOP_DATABASE_URL)")
    units, count, users = options.shape
    started, machine = report.now_iso(), report.machine_info()
    runs: list[dict[str, Any]] = []
    with _peakshop(options, settings) as peakshop:
        token, admin = settings.service_token, settings.admin_token
        # Warm-up on a sale of its own: the measured sale starts untouched.
        warm_sale = asyncio.run(create_sale(peakshop.url, admin, quantity=100, per_user_limit=1))
        warm = _runner(options, console, token, warm_sale, WARMUP_ATTEMPTS, WARMUP_ATTEMPTS, "warm")
        warm.measure(
            "warm-up", peakshop, mode="closed", requests=WARMUP_ATTEMPTS, concurrency=50, keep=False
        )
        sale_id = asyncio.run(create_sale(peakshop.url, admin, quantity=units, per_user_limit=1))
        before = asyncio.run(admission_outcomes(peakshop.url))
        runner = _runner(options, console, token, sale_id, count, users, f"b{sale_id}")
        ours = _measure(runner, f"peakshop {options.scenario}", peakshop, options, count)
        after = asyncio.run(admission_outcomes(peakshop.url))
        with console.status("waiting for the queue to drain the winners"):
            verdict = asyncio.run(settle(settings, sale_id, within=options.drain_timeout))
        verdict["per_user_limit"] = 1
        ours["outcomes"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        ours["verdict"] = verdict
        runs.append(ours)
    if options.compare_minimal:
        with spawn_minimal(options.minimal_app) as minimal:
            mini = _runner(options, console, token, 1, count, users, "min")
            mini.measure(
                "warm-up",
                minimal,
                mode="closed",
                requests=WARMUP_ATTEMPTS,
                concurrency=50,
                keep=False,
            )
            runs.append(_measure(mini, "minimal app", minimal, options, count))
    if options.compare_conventional:
        with _spawn_conventional(options.conventional_app) as conventional:
            conv_sale = asyncio.run(_sale_for_conventional(options, settings, units))
            conv = _runner(options, console, token, conv_sale, count, users, f"c{conv_sale}")
            runs.append(_measure(conv, "conventional FOR UPDATE", conventional, options, count))
            asyncio.run(close_conventional_sale(settings, conv_sale))
    targets = judge_scenario(options.scenario, runs, settings=settings, rate=options.rate)
    report.print_report(console, runs=runs, targets=targets, extra=[])
    console.print(_verdict_table(runs[0]))
    ok = all(t.passed for t in targets) and all(r["valid"] for r in runs)
    if options.json_path is not None:
        report.write_json(
            options.json_path,
            report.scenario_document(
                f"flash-sale {options.scenario}",
                started=started,
                machine=machine,
                settings=settings,
                options=options,
                runs=runs,
                targets=targets,
                ok=ok,
            ),
        )
        console.print(f"wrote {options.json_path}")
    return 0 if ok else 1


async def _sale_for_conventional(options: FlashSaleOptions, settings: Settings, units: int) -> int:
    """The conventional app has no admin API: the sale is made through peakshop's, on the
    same database, by a short-lived in-process app."""
    from litestar.testing import AsyncTestClient

    from peakshop.app import create_app

    app = create_app(settings.replace(worker_in_process=False, migrate_on_start=False))
    async with AsyncTestClient(app=app) as client:
        product = await client.post(
            "/api/v1/inventory",
            json={"name": "conventional bench", "price": "19.99", "stock": units},
            headers={"Authorization": f"Bearer {settings.admin_token}"},
        )
        now = datetime.now(UTC)
        sale = await client.post(
            "/api/v1/flash-sales",
            json={
                "product_id": product.json()["id"],
                "price": "9.99",
                "quantity": units,
                "starts_at": (now - timedelta(minutes=1)).isoformat(),
                "ends_at": (now + timedelta(hours=2)).isoformat(),
                "per_user_limit": 1,
            },
            headers={"Authorization": f"Bearer {settings.admin_token}"},
        )
        return int(sale.json()["id"])


async def close_conventional_sale(settings: Settings, sale_id: int) -> None:
    """End the baseline's sale once measured: its orders are never processed (the baseline
    has no queue), and left pending in the database they would be cancelled by the payment
    sweep of whichever peakshop runs next on it, in the middle of that run's measurement.
    Its pending orders are cancelled, their units given back, and the sale ended."""
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(orders)
                .where(orders.c.flash_sale_id == sale_id, orders.c.status == "pending")
                .values(status="cancelled", failure_reason="bench_baseline_closed", updated_at=now)
            )
            await conn.execute(
                sa.update(flash_sales)
                .where(flash_sales.c.id == sale_id)
                .values(
                    remaining=flash_sales.c.remaining + flash_sales.c.reserved,
                    reserved=0,
                    ends_at=now,
                )
            )
            await conn.execute(
                sa.update(flash_sale_buyers)
                .where(flash_sale_buyers.c.sale_id == sale_id)
                .values(quantity=0)
            )
    finally:
        await engine.dispose()


def _verdict_table(run: dict[str, Any]) -> Table:
    verdict, outcomes = run["verdict"], run["outcomes"]
    table = Table(title="Flash sale, read from the database after the drain", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("attempts", run["total"]),
        ("admitted (202)", run["statuses"].get("202", 0)),
        *(
            (f"rejected: {k}", int(v))
            for k, v in sorted(outcomes.items())
            if k not in ("admitted", "replayed")
        ),
        ("units in the sale", verdict["quantity"]),
        (
            "sold / reserved / remaining",
            f"{verdict['sold']} / {verdict['reserved']} / {verdict['remaining']}",
        ),
        ("orders by status", verdict["orders_by_status"]),
        ("oversold", verdict["oversold"]),
        ("sold + reserved + remaining == quantity", verdict["conserved"]),
        ("orders agree with the sale's counts", verdict["orders_agree_with_sale"]),
        ("most units held by one buyer", verdict["max_units_per_user"]),
        ("queue drained", verdict["drained"]),
        ("first order to last confirmation, s", verdict["first_order_to_last_confirmed_s"]),
        ("last order to last confirmation, s", verdict.get("last_order_to_last_confirmed_s")),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table
