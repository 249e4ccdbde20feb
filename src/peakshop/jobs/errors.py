"""Errors of the jobs domain."""

from __future__ import annotations

from peakshop.errors import Conflict, NotFound, PeakshopError


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str, *, what: str = "job") -> None:
        super().__init__(f"no {what} with id {job_id!r}", field="job_id")


class ReportNotFound(NotFound):
    code = "report_not_found"

    def __init__(self, report_id: str) -> None:
        super().__init__(f"no report with id {report_id!r}", field="report_id")


class ReportNotReady(Conflict):
    code = "report_not_ready"

    def __init__(self, report_id: str, status: str) -> None:
        super().__init__(
            f"report {report_id!r} is {status}; download it once it is done",
            field="report_id",
            extra={"status": status},
        )


class ReportFileMissing(PeakshopError):
    """The report is done but its file is not in this host's reports directory (removed, or
    written by a worker on another host without shared storage)."""

    status_code = 410
    code = "report_file_missing"
