"""HTTP routes of the jobs domain: the dead-letter queue's administration."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter

from peakshop.auth import admin_guard
from peakshop.jobs import audit, service
from peakshop.jobs.schemas import DeadLetterPage, JobOut
from peakshop.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page_of
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
            conn, subject=subject, before_id=decode_cursor(cursor), limit=limit + 1
        )
    items, next_cursor = page_of([audit.entry_out(row) for row in rows], limit=limit)
    return audit.AuditPage(items=items, next_cursor=next_cursor)


router = Router(
    path="/",
    route_handlers=[list_dead_letters, retry_dead_letter, discard_dead_letter, list_audit],
    tags=["jobs"],
)
