"""Response shapes of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

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


ReportType = Literal["sales", "coupons", "inventory"]
ReportStatus = Literal["queued", "running", "done", "failed"]
# Range bounds carry their offset: a report's day must not depend on the server's zone.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class ReportRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: ReportType
    # [from, to): required for sales and coupons; the inventory report is a snapshot.
    from_: AwareDatetime | None = msgspec.field(default=None, name="from")
    to: AwareDatetime | None = None
    format: Literal["csv"] = "csv"


class ReportAccepted(msgspec.Struct, kw_only=True):
    report_id: str
    job_id: str
    status: ReportStatus = "queued"


class ReportOut(msgspec.Struct, kw_only=True):
    id: str
    type: ReportType
    format: str
    from_: datetime | None = msgspec.field(name="from")
    to: datetime | None
    status: ReportStatus
    job_id: str
    rows: int | None  # data rows in the file (the header not counted)
    size_bytes: int | None
    error: str | None
    download_url: str | None  # once done
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
