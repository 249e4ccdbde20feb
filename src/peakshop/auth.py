"""Bearer-token auth: the admin token for administration, the service token (or the admin
token) for the storefront backend's calls."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from peakshop.config import Settings
from peakshop.errors import Forbidden, Unauthorized


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self.admin = f"Bearer {settings.admin_token}".encode()
        self.service = f"Bearer {settings.service_token}".encode()

    def check(self, header: bytes | None, *, admin_only: bool) -> None:
        """Raise Unauthorized (no or malformed token) or Forbidden (a token without the right)."""
        if not header or not header.startswith(b"Bearer "):
            raise Unauthorized(
                "missing bearer token in the Authorization header", field="authorization"
            )
        if hmac.compare_digest(header, self.admin):
            return
        if hmac.compare_digest(header, self.service):
            if admin_only:
                raise Forbidden("this endpoint needs the admin token", field="authorization")
            return
        raise Unauthorized("invalid bearer token", field="authorization")


def _header(connection: ASGIConnection) -> bytes | None:  # type: ignore[type-arg]
    value = connection.headers.get("authorization")
    return value.encode() if value is not None else None


def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    connection.app.state.tokens.check(_header(connection), admin_only=True)


def service_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    connection.app.state.tokens.check(_header(connection), admin_only=False)
