"""The jobs table: every job's status, attempts and payload, in the system of record.

In embedded mode it is the queue itself (workers claim rows). In scaled mode the queue is a
Redis stream and this table is the job's status and its outbox: a job whose message was
lost (Redis restarted or flushed, an API process killed after its commit) is published
again from here by a sweep. Scheduling times are epoch seconds (floats): they are compared
on every claim, the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

from peakshop.db import Timestamp, metadata

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    # queued | processing | done | failed (an attempt failed, a retry is scheduled) | dead
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("locked_until", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("subject", sa.String(64), nullable=True),  # e.g. the order id
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("discarded_at", Timestamp, nullable=True),  # a dead letter an admin dropped
    sa.CheckConstraint(
        "status IN ('queued', 'processing', 'done', 'failed', 'dead')", name="status"
    ),
    sa.Index("ix_jobs_status_available", "status", "available_at"),
    sa.Index("ix_jobs_subject", "subject"),
)
