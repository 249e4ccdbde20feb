"""HTTP routes of the jobs domain: the dead-letter queue's administration, the audit trail,
reports."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import File

from peakshop.auth import admin_guard
from peakshop.jobs import audit, reports, service
from peakshop.jobs.schemas import (
    DeadLetterPage,
    JobOut,
    ReportAccepted,
    ReportOut,
    ReportRequest,
)
from peakshop.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT
from peakshop.runtime import Runtime


@get("/api/v1/jobs/dead-letters", guards=[admin_guard])
async def list_dead_letters(
    state: State,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> DeadLetterPage:
    """Jobs that ran out of attempts (already compensated), oldest id first."""
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        items, next_cursor = await service.list_dead_letters(conn, limit=limit, after_id=cursor)
    return DeadLetterPage(items=items, next_cursor=next_cursor)


@post("/api/v1/jobs/dead-letters/{job_id:str}/retry", guards=[admin_guard], status_code=202)
async def retry_dead_letter(job_id: FromPath[str], state: State) -> JobOut:
    """Queue the job again with a fresh set of attempts. An order job takes its order's
    units again if they are still there, and leaves the order failed otherwise."""
    job = await service.retry_dead_letter(state.runtime, job_id=job_id)
    await state.runtime.audit(
        action="dead_letter.retry", subject=f"job:{job_id}", before=None, after=job
    )
    return job


@post("/api/v1/jobs/dead-letters/{job_id:str}/discard", guards=[admin_guard], status_code=204)
async def discard_dead_letter(job_id: FromPath[str], state: State) -> None:
    """Drop the dead letter from the list (the job row stays, marked discarded)."""
    await service.discard_dead_letter(state.runtime, job_id=job_id)
    await state.runtime.audit(
        action="dead_letter.discard", subject=f"job:{job_id}", before=None, after=None
    )


@get("/api/v1/audit", guards=[admin_guard])
async def list_audit(
    state: State,
    subject: Annotated[str | None, QueryParameter(max_length=128)] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> audit.AuditPage:
    """Admin changes, newest first: who, what (action, subject), before, after, when."""
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        rows = await audit.list_entries(
            conn, subject=subject, after=audit.decode_cursor(cursor), limit=limit + 1
        )
    items = [audit.entry_out(row) for row in rows[:limit]]
    next_cursor = audit.encode_cursor(items[-1]) if len(rows) > limit and items else None
    return audit.AuditPage(items=items, next_cursor=next_cursor)


@post("/api/v1/reports", guards=[admin_guard], status_code=202)
async def create_report(data: JSONBody[ReportRequest], state: State) -> ReportAccepted:
    """Queue a report (`sales`, `coupons` or `inventory`, CSV) over [from, to); poll
    `GET /api/v1/reports/{id}` until it is done, then download it."""
    return await reports.create_report(state.runtime, request=data)


@get("/api/v1/reports/{report_id:str}", guards=[admin_guard])
async def get_report(report_id: FromPath[str], state: State) -> ReportOut:
    """The report's status (queued, running, done, failed) and, once done, its download URL."""
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await reports.get_report(conn, report_id=report_id)


@get(
    "/api/v1/reports/{report_id:str}/download",
    guards=[admin_guard],
    media_type="text/csv; charset=utf-8",
)
async def download_report(report_id: FromPath[str], state: State) -> File:
    """The report's file, streamed (409 until it is done)."""
    path = await reports.report_file(state.runtime, report_id=report_id)
    return File(path=path, filename=path.name, media_type="text/csv; charset=utf-8")


router = Router(
    path="/",
    route_handlers=[
        list_dead_letters,
        retry_dead_letter,
        discard_dead_letter,
        list_audit,
        create_report,
        get_report,
        download_report,
    ],
    tags=["jobs"],
)
