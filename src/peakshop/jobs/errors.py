"""Errors of the jobs domain."""

from __future__ import annotations

from peakshop.errors import NotFound


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str, *, what: str = "job") -> None:
        super().__init__(f"no {what} with id {job_id!r}", field="job_id")
