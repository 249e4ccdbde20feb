"""The ``peakshop`` command."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from peakshop.config import Mode, SettingsError, load_settings

app = typer.Typer(
    help="peakshop: an e-commerce backend built for peak traffic.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
logs_app = typer.Typer(help="Validation log maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(logs_app, name="logs")


def _settings():  # type: ignore[no-untyped-def]
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


def main() -> None:
    app()
