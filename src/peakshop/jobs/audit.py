"""The audit trail: every admin change (who, what, before, after, when), recorded by a
background job so that the admin request does not wait for it, and listed by
``GET /api/v1/audit``. One entry per job: a redelivered job writes nothing twice."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.db import upsert_insert
from peakshop.errors import InvalidInput
from peakshop.jobs.models import audit_log
from peakshop.jobs.retry import RetryPolicy
from peakshop.jobs.worker import JobContext, JobType
from peakshop.kit.clock import from_db, utcnow

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

RECORD_AUDIT = "audit.record"


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    actor: str
    action: str
    subject: str
    before: Any
    after: Any
    at: datetime


class AuditPage(msgspec.Struct, kw_only=True):
    items: list[AuditEntry]
    next_cursor: str | None


def snapshot(value: Any) -> Any:
    """A JSON-ready copy of a row or a response struct (dates as ISO strings)."""
    if value is None:
        return None
    return msgspec.json.decode(
        msgspec.json.encode(dict(value) if hasattr(value, "keys") else value)
    )


async def record(context: JobContext, payload: dict[str, Any]) -> None:
    async with context.runtime.db.write() as conn:
        await conn.execute(
            upsert_insert(conn, audit_log)
            .values(
                job_id=context.message.id,
                actor=payload["actor"],
                action=payload["action"],
                subject=payload["subject"],
                before=payload["before"],
                after=payload["after"],
                at=datetime.fromisoformat(payload["at"]),
            )
            .on_conflict_do_nothing(index_elements=["job_id"])
        )


async def enqueue(
    runtime: Runtime, *, action: str, subject: str, before: Any, after: Any, actor: str = "admin"
) -> None:
    """Record an admin change, asynchronously (called after the change's commit)."""
    from peakshop.jobs import service

    await service.enqueue(
        runtime,
        RECORD_AUDIT,
        {
            "actor": actor,
            "action": action,
            "subject": subject,
            "before": snapshot(before),
            "after": snapshot(after),
            "at": utcnow().isoformat(),
        },
        subject=subject,
    )


class _Cursor(msgspec.Struct, array_like=True):
    at: datetime
    id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


def encode_cursor(row: AuditEntry) -> str:
    raw = msgspec.json.encode(_Cursor(row.at, row.id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> _Cursor | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("cursor is malformed", field="cursor") from exc


async def list_entries(
    conn: AsyncConnection, *, subject: str | None, after: _Cursor | None, limit: int
) -> Sequence[RowMapping]:
    """Newest change first, by when it was made (jobs may record them out of order)."""
    query = sa.select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)
    if subject is not None:
        query = query.where(audit_log.c.subject == subject)
    if after is not None:
        last_id = sa.literal(after.id, sa.BigInteger)
        query = query.where(
            sa.or_(
                audit_log.c.at < after.at,
                sa.and_(audit_log.c.at == after.at, audit_log.c.id < last_id),
            )
        )
    return (await conn.execute(query)).mappings().all()


def entry_out(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        before=row["before"],
        after=row["after"],
        at=from_db(row["at"]) or row["at"],
    )


JOB_TYPES = [
    JobType(name=RECORD_AUDIT, handle=record, retry=RetryPolicy(max_attempts=8, base_delay=1.0))
]
