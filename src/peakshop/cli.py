"""The ``peakshop`` command."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from peakshop.bench import cli as bench_cli
from peakshop.config import Mode, Settings, SettingsError, load_settings

app = typer.Typer(
    help="peakshop: an e-commerce backend built for peak traffic.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
logs_app = typer.Typer(help="Validation log maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(logs_app, name="logs")
app.add_typer(bench_cli.app, name="bench", no_args_is_help=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (scaled mode only).")] = 1,
) -> None:
    """Serve the HTTP API (granian). Embedded mode migrates the database on start."""
    settings = _settings()
    if workers > 1 and settings.mode is Mode.EMBEDDED:
        typer.echo(
            "embedded mode keeps hot state in one process: use --workers 1, or set "
            "PEAKSHOP_REDIS_URL (and a PostgreSQL PEAKSHOP_DATABASE_URL) to scale out",
            err=True,
        )
        raise typer.Exit(2)
    if workers > 1:
        # prometheus-client aggregates the workers' metrics through files in this folder; it
        # must be set before any worker imports prometheus_client.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="peakshop-metrics-")
        )
    from granian import Granian
    from granian.constants import Interfaces

    typer.echo(f"peakshop {settings.mode.value} mode on http://{host}:{port} ({workers} worker(s))")
    Granian(
        "peakshop.app:app_factory",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        backlog=2048,
        log_access=False,
    ).serve()


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once (default PEAKSHOP_WORKER_CONCURRENCY)."),
    ] = None,
) -> None:
    """Work the job queue and run the scheduled sweeps until SIGTERM or SIGINT, then let the
    running jobs finish. Scaled mode runs any number of these; in embedded mode the server
    works the queue itself (a worker beside it shares the SQLite file)."""
    import signal

    from peakshop.runtime import Runtime

    settings = _settings().replace(worker_in_process=False)

    async def run() -> None:
        runtime = Runtime(settings, role="worker")
        await runtime.start()
        runtime.start_worker(concurrency=concurrency)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        typer.echo(f"peakshop worker ({settings.mode.value} mode) working the queue")
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(run())


@app.command()
def reconcile() -> None:
    """Rebuild the hot counters (flash-sale stock, buyers' caps, idempotency keys, coupon
    usage) from the system of record. Every server also does it at start for what the hot
    store lacks; run this after the hot store lost or corrupted data."""
    from peakshop.orders.tasks import restore_hot_sales
    from peakshop.runtime import Runtime

    settings = _settings().replace(worker_in_process=False)

    async def run() -> int:
        runtime = Runtime(settings)
        await runtime.state.start()
        try:
            await runtime.load_usage_counters()
            return await restore_hot_sales(runtime, replace=True)
        finally:
            await runtime.state.close()
            await runtime.db.dispose()

    sales = asyncio.run(run())
    typer.echo(f"rebuilt the coupon usage counters and {sales} open flash sale(s)")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the Alembic migrations to PEAKSHOP_DATABASE_URL."""
    from peakshop import migrate

    settings = _settings()
    migrate.upgrade(settings, revision)
    typer.echo(f"database at {revision}: {settings.database_url}")


@logs_app.command("replay")
def logs_replay(
    file: Annotated[
        Path | None, typer.Option(help="Dead-letter file (default: the configured one).")
    ] = None,
) -> None:
    """Re-insert validation-log batches that were dead-lettered to the JSON-lines file."""
    from peakshop.coupons.tasks import replay_dead_letters
    from peakshop.db import Database

    settings = _settings()
    path = file or Path(settings.validation_log_dead_letter_path)

    async def run() -> int:
        db = Database(settings)
        try:
            return await replay_dead_letters(db, path)
        finally:
            await db.dispose()

    count = asyncio.run(run())
    typer.echo(f"replayed {count} validation log records from {path}")


@app.command()
def seed(
    users: Annotated[int, typer.Option(min=0, help="Users to create.")] = 1_000_000,
    coupons: Annotated[int, typer.Option(min=0, help="Coupons to create.")] = 5_000,
    usage: Annotated[int, typer.Option(min=0, help="Usage records over active coupons.")] = 3_000,
    sellers: Annotated[int, typer.Option(min=0, help="Sellers to create (catalog).")] = 0,
    products: Annotated[int, typer.Option(min=0, help="Products to create (catalog).")] = 0,
    orders: Annotated[
        int, typer.Option(min=0, help="Orders over the last year (needs --products).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 42,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Delete existing users, coupons, usage and logs first (and the catalog and "
            "orders, when seeding them).",
        ),
    ] = False,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the database already holds data.")
    ] = False,
) -> None:
    """Fill the database with a large realistic data set through its bulk path."""
    from peakshop.bench.seed import run_command

    code = run_command(
        _settings(),
        users=users,
        coupons=coupons,
        usage=usage,
        sellers=sellers,
        products=products,
        orders=orders,
        seed=seed,
        reset=reset,
        if_empty=if_empty,
    )
    raise typer.Exit(code)


def main() -> None:
    app()
