"""Response shapes of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

JobStatus = Literal["queued", "processing", "done", "failed", "dead"]


class JobOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: JobStatus
    attempts: int
    max_attempts: int
    last_error: str | None
    subject: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class DeadLetterPage(msgspec.Struct, kw_only=True):
    items: list[JobOut]
    next_cursor: str | None
