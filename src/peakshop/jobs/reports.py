"""Reports: an admin asks for one (``POST /api/v1/reports``), a ``reports.generate`` job writes
it into a file under ``PEAKSHOP_REPORTS_DIR``, and the file is downloaded once it is done.

Status: queued (also while a failed attempt waits for its retry, with the error) -> running ->
done | failed (out of attempts: the dead letter's compensation marks it failed with the
error). The report row and its job are written in one transaction.

A report over a million orders runs longer than a job's lease: the job renews its lease while
it writes, so no other worker starts the same report meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.config import Settings
from peakshop.errors import InvalidInput
from peakshop.jobs import repository
from peakshop.jobs.errors import ReportFileMissing, ReportNotFound, ReportNotReady
from peakshop.jobs.models import reports
from peakshop.jobs.report_files import write_csv
from peakshop.jobs.retry import RetryPolicy
from peakshop.jobs.schemas import ReportAccepted, ReportOut, ReportRequest
from peakshop.jobs.service import Outbox
from peakshop.jobs.worker import JobContext, JobType
from peakshop.kit.clock import from_db, utcnow
from peakshop.kit.ids import new_id

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

GENERATE_REPORT = "reports.generate"
MAX_RETRY_DELAY = 300.0
RANGED = ("sales", "coupons")


def _utc(value: datetime | None) -> datetime | None:
    # SQLite compares stored UTC wall-clock text: bounds must be in UTC too.
    return None if value is None else value.astimezone(UTC)


def _check(request: ReportRequest) -> tuple[datetime | None, datetime | None]:
    range_from, range_to = _utc(request.from_), _utc(request.to)
    if request.type in RANGED:
        if range_from is None:
            raise InvalidInput(f"a {request.type} report needs 'from'", field="from")
        if range_to is None:
            raise InvalidInput(f"a {request.type} report needs 'to'", field="to")
    if range_from is not None and range_to is not None and range_to <= range_from:
        raise InvalidInput("'to' must be later than 'from'", field="to")
    return range_from, range_to


async def create_report(runtime: Runtime, *, request: ReportRequest) -> ReportAccepted:
    range_from, range_to = _check(request)
    report_id, job_id, now = new_id("rpt"), new_id("job"), utcnow()
    outbox = Outbox(runtime)
    async with runtime.db.write() as conn:
        await conn.execute(
            sa.insert(reports).values(
                id=report_id,
                type=request.type,
                format=request.format,
                range_from=range_from,
                range_to=range_to,
                status="queued",
                job_id=job_id,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.run_sync(
            outbox.stage,
            GENERATE_REPORT,
            [{"report_id": report_id}],
            subjects=[report_id],
            job_ids=[job_id],
            now=now,
        )
    await outbox.publish()
    return ReportAccepted(report_id=report_id, job_id=job_id)


def download_url(report_id: str) -> str:
    return f"/api/v1/reports/{report_id}/download"


def report_out(row: RowMapping) -> ReportOut:
    return ReportOut(
        id=row["id"],
        type=row["type"],
        format=row["format"],
        from_=from_db(row["range_from"]),
        to=from_db(row["range_to"]),
        status=row["status"],
        job_id=row["job_id"],
        rows=row["row_count"],
        size_bytes=row["size_bytes"],
        error=row["error"],
        download_url=download_url(row["id"]) if row["status"] == "done" else None,
        created_at=from_db(row["created_at"]) or row["created_at"],
        updated_at=from_db(row["updated_at"]) or row["updated_at"],
        finished_at=from_db(row["finished_at"]),
    )


async def _get(conn: AsyncConnection, report_id: str) -> RowMapping | None:
    return (
        (await conn.execute(sa.select(reports).where(reports.c.id == report_id))).mappings().first()
    )


async def get_report(conn: AsyncConnection, *, report_id: str) -> ReportOut:
    row = await _get(conn, report_id)
    if row is None:
        raise ReportNotFound(report_id)
    return report_out(row)


async def report_file(runtime: Runtime, *, report_id: str) -> Path:
    """The finished report's file."""
    async with runtime.db.read() as conn:
        row = await _get(conn, report_id)
    if row is None:
        raise ReportNotFound(report_id)
    if row["status"] != "done":
        raise ReportNotReady(report_id, row["status"])
    path = Path(runtime.settings.reports_dir) / str(row["file_name"])
    if not await asyncio.to_thread(path.is_file):
        raise ReportFileMissing(
            f"the file of report {report_id!r} is not in the reports directory",
            field="report_id",
        )
    return path


# --- the job ------------------------------------------------------------------------------


async def _update(
    runtime: Runtime, report_id: str, *where: Any, **values: Any
) -> RowMapping | None:
    async with runtime.db.write() as conn:
        result = await conn.execute(
            sa.update(reports)
            .where(reports.c.id == report_id, *where)
            .values(updated_at=utcnow(), **values)
            .returning(reports)
        )
        row: RowMapping | None = result.mappings().first()
        return row


@contextlib.asynccontextmanager
async def keep_lease(runtime: Runtime, job_id: str) -> AsyncIterator[None]:
    """Renew the job's lease every third of it while the block runs."""
    lease = runtime.settings.job_lease_seconds

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with runtime.db.write() as conn:
                    await repository.extend_lease(conn, job_id, until=time.time() + lease)
            except Exception:  # the next renewal tries again; a lapse only risks a rerun
                log.warning("job_lease_renewal_failed", job=job_id, exc_info=True)

    task = asyncio.create_task(renew(), name=f"lease-{job_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def generate(context: JobContext, payload: dict[str, Any]) -> None:
    """Write the report's file, then mark it done. Idempotent: a done or failed report is left
    alone, and a rerun (a redelivery after a crash) writes the whole file again."""
    runtime = context.runtime
    report_id = payload["report_id"]
    row = await _update(
        runtime, report_id, reports.c.status.in_(("queued", "running")), status="running"
    )
    if row is None:
        log.info("report_not_generated", report_id=report_id, reason="not queued")
        return
    file_name = f"{report_id}.{row['format']}"
    started = time.perf_counter()
    try:
        async with keep_lease(runtime, context.message.id):
            count, size = await write_csv(
                runtime.db,
                report_type=row["type"],
                range_from=from_db(row["range_from"]),
                range_to=from_db(row["range_to"]),
                path=Path(runtime.settings.reports_dir) / file_name,
            )
    except Exception as exc:
        try:  # back to queued with the error while the retry waits
            await _update(
                runtime,
                report_id,
                reports.c.status == "running",
                status="queued",
                error=f"{type(exc).__name__}: {exc}",
            )
        except Exception:  # the attempt's own failure is the one to raise
            log.warning("report_status_update_failed", report_id=report_id, exc_info=True)
        raise
    await _update(
        runtime,
        report_id,
        reports.c.status == "running",
        status="done",
        file_name=file_name,
        row_count=count,
        size_bytes=size,
        error=None,
        finished_at=utcnow(),
    )
    log.info(
        "report_generated",
        report_id=report_id,
        rows=count,
        bytes=size,
        seconds=round(time.perf_counter() - started, 3),
    )


async def mark_failed(context: JobContext, payload: dict[str, Any], error: str) -> None:
    """Out of attempts: the report is failed, with the last error."""
    await _update(
        context.runtime,
        payload["report_id"],
        reports.c.status.in_(("queued", "running")),
        status="failed",
        error=error,
        finished_at=utcnow(),
    )


def job_types(settings: Settings) -> list[JobType]:
    return [
        JobType(
            name=GENERATE_REPORT,
            handle=generate,
            on_dead=mark_failed,
            retry=RetryPolicy(
                max_attempts=settings.report_job_max_attempts,
                base_delay=settings.report_job_retry_base_delay,
                max_delay=MAX_RETRY_DELAY,
            ),
        )
    ]
