"""Typed error hierarchy. Services raise these; one handler in ``app.py`` maps them to JSON."""

from __future__ import annotations


class PeakshopError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error": {"code": self.code, "message": self.message, "field": self.field}
        }
        body.update(self.extra)
        return body


class InvalidInput(PeakshopError):
    status_code = 400
    code = "invalid_request"


class Unauthorized(PeakshopError):
    status_code = 401
    code = "unauthorized"


class Forbidden(PeakshopError):
    status_code = 403
    code = "forbidden"


class NotFound(PeakshopError):
    status_code = 404
    code = "not_found"


class Conflict(PeakshopError):
    status_code = 409
    code = "conflict"


class Unavailable(PeakshopError):
    status_code = 503
    code = "unavailable"


class RateLimited(PeakshopError):
    """Too many requests in the window of one scope (``user`` or ``ip``); the handler adds a
    ``Retry-After`` header with the same number of seconds as the body's ``retry_after``."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, scope: str) -> None:
        super().__init__(message, extra={"retry_after": retry_after, "scope": scope})
        self.retry_after = retry_after
        self.scope = scope
