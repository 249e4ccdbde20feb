"""Job status, enqueueing (one job, a batch, or an outbox written in the caller's transaction)
and the dead-letter queue's administration."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.jobs import repository
from peakshop.jobs.errors import JobNotFound
from peakshop.jobs.queue import JobMessage
from peakshop.jobs.schemas import JobOut
from peakshop.jobs.worker import new_message
from peakshop.kit.clock import from_db, utcnow
from peakshop.kit.ids import new_id

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)


def job_out(row: RowMapping) -> JobOut:
    return JobOut(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        last_error=row["last_error"],
        subject=row["subject"],
        created_at=from_db(row["created_at"]) or row["created_at"],
        updated_at=from_db(row["updated_at"]) or row["updated_at"],
        finished_at=from_db(row["finished_at"]),
    )


async def get_job(conn: AsyncConnection, *, job_id: str) -> JobOut:
    row = await repository.get_job(conn, job_id)
    if row is None:
        raise JobNotFound(job_id)
    return job_out(row)


async def list_dead_letters(
    conn: AsyncConnection, *, limit: int, after_id: str | None
) -> tuple[list[JobOut], str | None]:
    rows = await repository.list_dead(conn, limit=limit + 1, after_id=after_id)
    page = [job_out(row) for row in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit and page else None)


async def retry_dead_letter(runtime: Runtime, *, job_id: str) -> JobOut:
    """Queue a dead letter again with a fresh set of attempts."""
    async with runtime.db.write() as conn:
        row = await repository.requeue_dead(conn, job_id, now=utcnow(), epoch=time.time())
    if row is None:
        raise JobNotFound(job_id, what="dead letter")
    await publish_committed(runtime, repository.message_of(row))
    return job_out(row)


async def discard_dead_letter(runtime: Runtime, *, job_id: str) -> None:
    async with runtime.db.write() as conn:
        if not await repository.discard_dead(conn, job_id, now=utcnow()):
            raise JobNotFound(job_id, what="dead letter")


async def enqueue(
    runtime: Runtime, name: str, payload: dict[str, Any], *, subject: str | None = None
) -> str:
    """Queue a job of a registered type in its own transaction: the row, then the message.
    Returns the job id."""
    message = new_message(
        runtime.job_types[name], job_id=new_id("job"), payload=payload, subject=subject
    )
    now = utcnow()
    async with runtime.db.write() as conn:
        await conn.run_sync(repository.insert_job, message, now=now, available_at=now.timestamp())
    await publish_committed(runtime, message)
    return message.id


class Outbox:
    """Jobs written in the caller's transaction and published after its commit: a job exists
    if and only if the change that asked for it committed (a worker never sees a job for a
    rolled-back change, and a crash after the commit loses no job: the republish sweep sends
    a message whose publish never happened)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.messages: list[JobMessage] = []

    def stage(
        self,
        conn: sa.Connection,
        name: str,
        payloads: Sequence[dict[str, Any]],
        *,
        subjects: Sequence[str | None] | None = None,
        job_ids: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[JobMessage]:
        """Insert one job per payload (in one statement); a job id that already exists is
        left alone, so deterministic ids make staging idempotent."""
        if not payloads:
            return []
        job_type = self.runtime.job_types[name]
        ids = job_ids or [new_id("job") for _ in payloads]
        about = subjects or [None] * len(payloads)
        messages = [
            new_message(job_type, job_id=job_id, payload=payload, subject=subject)
            for job_id, payload, subject in zip(ids, payloads, about, strict=True)
        ]
        now = now or utcnow()
        repository.insert_jobs(conn, messages, now=now, available_at=now.timestamp())
        self.messages += messages
        return messages

    async def publish(self) -> None:
        """After the commit. A failed publish is not the caller's failure: the jobs are
        committed, and the republish sweep sends them after the grace period."""
        messages, self.messages = self.messages, []
        if not messages:
            return
        try:
            await self.runtime.queue.publish_many(messages)
        except Exception:
            log.exception("job_publish_failed", jobs=len(messages), name=messages[0].name)


async def publish_committed(runtime: Runtime, message: JobMessage) -> None:
    """Publish a job whose row is committed. A failure (Redis away) is not the caller's: the
    job exists, and the republish sweep sends its message after the grace period."""
    try:
        await runtime.queue.publish(message)
    except Exception:
        log.exception("job_publish_failed", job=message.id, name=message.name)


async def enqueue_many(
    runtime: Runtime,
    name: str,
    payloads: Sequence[dict[str, Any]],
    *,
    subjects: Sequence[str | None] | None = None,
) -> list[str]:
    """``enqueue`` for a batch: every row in one transaction, then one batched publish.
    Returns the job ids."""
    outbox = Outbox(runtime)
    async with runtime.db.write() as conn:
        messages = await conn.run_sync(outbox.stage, name, payloads, subjects=subjects)
    await outbox.publish()
    return [message.id for message in messages]
