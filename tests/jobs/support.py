"""Helpers of the background-job tests: a real SMTP server in the test process, a pluggable
SMS sender that records, rows read and written with a connection of our own."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session
from redis import asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from peakshop.config import Settings
from peakshop.jobs import repository as jobs_repository
from peakshop.jobs.queue_redis import RedisJobQueue
from tests.conftest import ADMIN
from tests.coupons.support import Client, eventually


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    """What the SMTP server accepted. ``refuse`` makes it answer DATA with that reply."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    refuse: str | None = None
    refused: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse is not None:
            self.refused += 1
            return self.refuse
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
            )
        )
        return "250 OK"


@asynccontextmanager
async def smtp_server() -> AsyncIterator[Inbox]:
    """aiosmtpd on the test's event loop, on a free port of 127.0.0.1."""
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(inbox, hostname="mx.peakshop.test"), "127.0.0.1", 0
    )
    inbox.port = server.sockets[0].getsockname()[1]
    try:
        yield inbox
    finally:
        server.close()
        await server.wait_closed()


def mail_settings(inbox: Inbox) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": inbox.port,
        "smtp_from": "Peakshop <orders@peakshop.test>",
        "smtp_starttls": False,
    }


# A pluggable SMS sender (PEAKSHOP_SMS_SENDER=tests.jobs.support:recording_sms): peakshop has no
# SMS gateway to talk to, so the plug-in point itself is what is tested.
SMS_SENT: list[tuple[str, str]] = []


class RecordingSms:
    async def send(self, *, user_id: str, text: str) -> None:
        SMS_SENT.append((user_id, text))


def recording_sms(settings: Settings) -> RecordingSms:
    return RecordingSms()


async def execute(settings: Settings, statement: Any, params: Any = None) -> None:
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(statement, params)
    finally:
        await engine.dispose()


async def fetch(
    settings: Settings, query: str | sa.Executable, **params: Any
) -> list[dict[str, Any]]:
    """Rows of a query (SQL text, or a statement whose column types convert the values)."""
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            statement = sa.text(query) if isinstance(query, str) else query
            result = await conn.execute(statement, params)
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


async def add_users(settings: Settings, users: dict[str, str]) -> None:
    from peakshop.coupons.models import users as table

    now = datetime.now(UTC)
    await execute(
        settings,
        sa.insert(table),
        [
            {"id": user_id, "email": address, "created_at": now}
            for user_id, address in users.items()
        ],
    )


async def job_settles(client: Client, job_id: str, *, within: float = 10.0) -> dict[str, Any]:
    """The job once it is done or dead."""

    async def settled() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/orders/jobs/{job_id}", headers=ADMIN)
        if response.status_code == 404:
            return None
        job: dict[str, Any] = response.json()
        return job if job["status"] in ("done", "dead") else None

    return await eventually(settled, within=within)


async def redeliver_job(settings: Settings, job_id: str) -> None:
    """Deliver a job's message again, as the queue would after a lost ack: the SQL queue finds
    the due row by itself; the Redis stream gets the message again."""
    if settings.redis_url is None:
        return
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            row = await jobs_repository.get_job(conn, job_id)
    finally:
        await engine.dispose()
    assert row is not None
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await RedisJobQueue(client, lease_seconds=30).publish(jobs_repository.message_of(row))
    finally:
        await client.aclose()
