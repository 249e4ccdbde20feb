"""SQL of the jobs table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.db import Record, upsert_insert
from peakshop.jobs.models import jobs
from peakshop.jobs.queue import JobMessage
from peakshop.kit import sqlite_driver
from peakshop.kit.sqlite_driver import IN_JSON, json_list

_WAITING = ("queued", "failed")


def message_of(row: Record) -> JobMessage:
    return JobMessage(
        id=row["id"],
        name=row["name"],
        payload=row["payload"],
        max_attempts=row["max_attempts"],
        subject=row["subject"],
    )


def _values(message: JobMessage, *, now: datetime, available_at: float) -> dict[str, Any]:
    return {
        "id": message.id,
        "name": message.name,
        "payload": message.payload,
        "max_attempts": message.max_attempts,
        "subject": message.subject,
        "status": "queued",
        "attempts": 0,
        "available_at": available_at,
        "created_at": now,
        "updated_at": now,
    }


def insert_job(
    conn: sa.Connection, message: JobMessage, *, now: datetime, available_at: float
) -> bool:
    """Insert the job unless it exists (a worker may have created it from its message
    first); True if this call inserted it."""
    statement = (
        upsert_insert(conn, jobs)
        .values(_values(message, now=now, available_at=available_at))
        .on_conflict_do_nothing(index_elements=["id"])
    )
    result = conn.execute(statement)
    return bool(result.rowcount)


def insert_jobs(
    conn: sa.Connection, messages: list[JobMessage], *, now: datetime, available_at: float
) -> None:
    rows = [_values(message, now=now, available_at=available_at) for message in messages]
    conn.execute(upsert_insert(conn, jobs).on_conflict_do_nothing(), rows)


async def get_job(conn: AsyncConnection, job_id: str) -> RowMapping | None:
    return (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).mappings().first()


def _startable(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(jobs.c.status.in_(_WAITING), jobs.c.available_at <= now),
        sa.and_(jobs.c.status == "processing", jobs.c.locked_until < now),
    )


_MESSAGE_COLUMNS = (
    jobs.c.id,
    jobs.c.name,
    jobs.c.payload,
    jobs.c.max_attempts,
    jobs.c.subject,
    jobs.c.available_at,
)


def due_jobs(
    conn: sa.Connection, *, now: float, limit: int, exclude: Collection[str]
) -> list[Record]:
    """The ``limit`` startable jobs due first (what ``message_of`` needs of each).

    One query per kind of startable row (queued, failed, processing with a lapsed lease),
    each walking ``(status, available_at)`` in order and stopping at ``limit``: the single
    query with an OR sorted every due row of a backlog (a flash sale's thousands) on each
    poll, and was the worker's most expensive statement."""
    if sqlite_driver.usable(conn):
        return _due_jobs_sqlite(conn, now=now, limit=limit, exclude=exclude)
    branches = [
        *(sa.and_(jobs.c.status == status, jobs.c.available_at <= now) for status in _WAITING),
        sa.and_(jobs.c.status == "processing", jobs.c.locked_until < now),
    ]
    rows: list[Record] = []
    for branch in branches:
        query = (
            sa.select(*_MESSAGE_COLUMNS).where(branch).order_by(jobs.c.available_at).limit(limit)
        )
        if exclude:
            query = query.where(jobs.c.id.not_in(list(exclude)))
        rows += conn.execute(query).mappings().all()
    return sorted(rows, key=lambda row: row["available_at"])[:limit]


_DUE_BRANCHES = (
    "status = 'queued' AND available_at <= ?",
    "status = 'failed' AND available_at <= ?",
    "status = 'processing' AND locked_until < ?",
)


def _due_jobs_sqlite(
    conn: sa.Connection, *, now: float, limit: int, exclude: Collection[str]
) -> list[Record]:
    """``due_jobs`` on the driver (kit/sqlite_driver.py). The worker's in-flight set (ids
    delivered and not yet acked, ~1,600 in a flash sale) goes in as one JSON array: as
    1,600 bound parameters in each branch a poll took 7.5-11 ms of GIL-holding Python, this
    way ~1 ms (``python benchmarks/queue_poll_cost.py``)."""
    columns = ", ".join(column.name for column in _MESSAGE_COLUMNS)
    skip = f" AND id NOT {IN_JSON}" if exclude else ""
    rows: list[Record] = []
    for branch in _DUE_BRANCHES:
        sql = f"SELECT {columns} FROM jobs WHERE {branch}{skip} ORDER BY available_at LIMIT ?"
        parameters = (now, json_list(exclude), limit) if exclude else (now, limit)
        rows += sqlite_driver.fetch(conn, sql, parameters)
    return sorted(rows, key=lambda row: row["available_at"])[:limit]


class Started(msgspec.Struct, kw_only=True):
    claimed: dict[str, int]  # job id -> the attempt that starts now
    too_early: list[str]  # rows not written yet by a writer that is probably still at it
    # job id -> epoch its lease ends: held by a worker (perhaps a dead one whose message
    # was reclaimed a moment before the row's lease ran out: try again then).
    held: dict[str, float] = msgspec.field(default_factory=dict)


def start_jobs(
    conn: sa.Connection,
    messages: list[JobMessage],
    *,
    now: datetime,
    epoch: float,
    lease: float,
    adopt_after: float,
) -> Started:
    """Claim jobs for one attempt each (the conditional update lets one attempt of a job run
    at a time). A job whose row is missing was enqueued before its writer committed the row
    (scaled mode): after ``adopt_after`` seconds the row is created from the message, since
    the writer probably died; before that, it is left to the writer (``too_early``)."""
    claimed = _claim(conn, [m.id for m in messages], now=now, epoch=epoch, lease=lease)
    unclaimed = [m for m in messages if m.id not in claimed]
    too_early: list[str] = []
    if unclaimed:
        existing = set(
            (conn.execute(sa.select(jobs.c.id).where(jobs.c.id.in_([m.id for m in unclaimed]))))
            .scalars()
            .all()
        )
        missing = [m for m in unclaimed if m.id not in existing]
        too_early = [m.id for m in missing if epoch - m.enqueued_at < adopt_after]
        adopted = [m for m in missing if m.id not in too_early]
        if adopted:
            insert_jobs(conn, adopted, now=now, available_at=epoch)
        # Claim again what exists now: the adopted rows, and rows whose writer committed
        # between the first claim and the look-up (PostgreSQL's READ COMMITTED shows them to
        # the next statement); what still cannot be claimed is done, dead or held.
        again = [m.id for m in unclaimed if m.id in existing] + [m.id for m in adopted]
        if again:
            claimed |= _claim(conn, again, now=now, epoch=epoch, lease=lease)
        still = [job_id for job_id in again if job_id not in claimed]
        if still:
            rows = conn.execute(
                sa.select(jobs.c.id, jobs.c.locked_until).where(
                    jobs.c.id.in_(still),
                    jobs.c.status == "processing",
                    jobs.c.locked_until >= epoch,
                )
            )
            held = {job_id: float(until) for job_id, until in rows}
            return Started(claimed=claimed, too_early=too_early, held=held)
    return Started(claimed=claimed, too_early=too_early)


_CLAIM_SQLITE = (
    "UPDATE jobs SET status = 'processing', attempts = attempts + 1, locked_until = ?,"
    f" updated_at = ? WHERE id {IN_JSON} AND ("
    # ``+status``: see IN_JSON
    "(+status IN ('queued', 'failed') AND available_at <= ?)"
    " OR (+status = 'processing' AND locked_until < ?)) RETURNING id, attempts"
)
_stored_time = sqlite_driver.datetime_processor(jobs.c.updated_at)
_FINISH_SQLITE = (
    "UPDATE jobs SET status = 'done', locked_until = NULL, updated_at = ?, finished_at = ?,"
    f" last_error = NULL WHERE id {IN_JSON}"
)


def _claim(
    conn: sa.Connection, ids: list[str], *, now: datetime, epoch: float, lease: float
) -> dict[str, int]:
    if sqlite_driver.usable(conn):
        parameters = (epoch + lease, _stored_time(now), json_list(ids), epoch, epoch)
        rows = sqlite_driver.fetch(conn, _CLAIM_SQLITE, parameters)
        return {row[0]: int(row[1]) for row in rows}
    result = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id.in_(ids), _startable(epoch))
        .values(
            status="processing",
            attempts=jobs.c.attempts + 1,
            locked_until=epoch + lease,
            updated_at=now,
        )
        .returning(jobs.c.id, jobs.c.attempts)
    )
    return {job_id: int(attempts) for job_id, attempts in result}


def finish_jobs(conn: sa.Connection, job_ids: list[str], *, now: datetime) -> None:
    if sqlite_driver.usable(conn):
        stamp = _stored_time(now)
        sqlite_driver.execute(conn, _FINISH_SQLITE, (stamp, stamp, json_list(job_ids)))
        return
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.id.in_(job_ids))
        .values(status="done", locked_until=None, updated_at=now, finished_at=now, last_error=None)
    )


async def finish_job(conn: AsyncConnection, job_id: str, *, now: datetime) -> None:
    await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id)
        .values(status="done", locked_until=None, updated_at=now, finished_at=now, last_error=None)
    )


async def extend_lease(conn: AsyncConnection, job_id: str, *, until: float) -> bool:
    """Keep a long attempt's job from being delivered again while it still runs; False if
    the job is no longer held (finished, or taken over after a lapse)."""
    result = await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "processing")
        .values(locked_until=until)
    )
    return bool(result.rowcount)


async def fail_job(
    conn: AsyncConnection, job_id: str, *, error: str, retry_at: float, now: datetime
) -> None:
    await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            status="failed",
            locked_until=None,
            available_at=retry_at,
            last_error=error,
            updated_at=now,
        )
    )


async def bury_job(conn: AsyncConnection, job_id: str, *, error: str, now: datetime) -> None:
    await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id)
        .values(status="dead", locked_until=None, last_error=error, updated_at=now, finished_at=now)
    )


async def list_dead(
    conn: AsyncConnection, *, limit: int, after_id: str | None
) -> Sequence[RowMapping]:
    query = (
        sa.select(jobs)
        .where(jobs.c.status == "dead", jobs.c.discarded_at.is_(None))
        .order_by(jobs.c.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(jobs.c.id > after_id)
    return (await conn.execute(query)).mappings().all()


async def requeue_dead(
    conn: AsyncConnection, job_id: str, *, now: datetime, epoch: float
) -> RowMapping | None:
    """A dead letter back in the queue with a fresh set of attempts."""
    result = await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "dead", jobs.c.discarded_at.is_(None))
        .values(
            status="queued",
            attempts=0,
            available_at=epoch,
            locked_until=None,
            finished_at=None,
            updated_at=now,
        )
        .returning(jobs)
    )
    row: RowMapping | None = result.mappings().first()
    return row


async def discard_dead(conn: AsyncConnection, job_id: str, *, now: datetime) -> bool:
    result = await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "dead", jobs.c.discarded_at.is_(None))
        .values(discarded_at=now, updated_at=now)
    )
    return bool(result.rowcount)


async def lost_messages(
    conn: AsyncConnection, *, now: float, grace: float, limit: int
) -> Sequence[RowMapping]:
    """Jobs that should have been worked by now: due for longer than ``grace`` seconds, or
    held past their lease for that long. Their messages may be lost; publishing them again
    is harmless (``start_jobs`` lets one attempt run at a time)."""
    stale = now - grace
    query = (
        sa.select(jobs)
        .where(
            sa.or_(
                sa.and_(jobs.c.status.in_(_WAITING), jobs.c.available_at <= stale),
                sa.and_(jobs.c.status == "processing", jobs.c.locked_until <= stale),
            )
        )
        .order_by(jobs.c.available_at)
        .limit(limit)
    )
    return (await conn.execute(query)).mappings().all()


async def count_waiting(conn: AsyncConnection, *, now: float) -> int:
    query = sa.select(sa.func.count()).where(
        jobs.c.status.in_(_WAITING), jobs.c.available_at <= now
    )
    return int((await conn.execute(query)).scalar_one())


async def counts_by_status(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))
    return {status: int(count) for status, count in rows}


async def count_dead_letters(conn: AsyncConnection) -> int:
    query = sa.select(sa.func.count()).where(jobs.c.status == "dead", jobs.c.discarded_at.is_(None))
    return int((await conn.execute(query)).scalar_one())


async def count_in_flight_and_dead(conn: AsyncConnection) -> tuple[int, int]:
    """(jobs being processed now, dead letters not retried or discarded), in one query over
    the status index; sampled every second by the monitor."""
    query = sa.select(
        sa.func.count().filter(jobs.c.status == "processing"),
        sa.func.count().filter(jobs.c.status == "dead", jobs.c.discarded_at.is_(None)),
    ).where(jobs.c.status.in_(("processing", "dead")))
    processing, dead = (await conn.execute(query)).one()
    return int(processing or 0), int(dead or 0)
