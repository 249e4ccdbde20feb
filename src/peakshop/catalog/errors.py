"""Errors of the catalog."""

from __future__ import annotations

from peakshop.errors import Conflict, InvalidInput, NotFound


class CatalogNotFound(NotFound):
    """A seller, category or product that does not exist (``what`` says which)."""

    def __init__(self, what: str, ident: int, *, field: str = "id") -> None:
        super().__init__(f"no {what} with id {ident}", field=field, code=f"{what}_not_found")


class UnknownReference(InvalidInput):
    """A filter or a field names a seller or category that does not exist."""

    def __init__(self, what: str, ident: int, *, field: str) -> None:
        super().__init__(f"no {what} with id {ident}", field=field)


class StillReferenced(Conflict):
    code = "still_referenced"

    def __init__(self, message: str) -> None:
        super().__init__(message)
