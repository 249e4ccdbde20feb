"""The migrations build exactly the schema the models declare, on SQLite and on PostgreSQL:
a column renamed in a model and not in a migration (or the reverse) fails here, not in a
deployment."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import peakshop.models  # noqa: F401  (registers every domain's tables)
from peakshop.coupons.models import validation_logs
from peakshop.db import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def migrated_url(request: pytest.FixtureRequest) -> str:
    """A database built by the migrations (the tests' template, copied)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


async def test_the_migrated_schema_is_the_models_schema(migrated_url: str) -> None:
    engine = create_async_engine(migrated_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:

            def differences(sync_conn: sa.Connection) -> list[object]:
                return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))

            found = await conn.run_sync(differences)
    finally:
        await engine.dispose()
    if migrated_url.startswith("sqlite"):  # the validation log has its own file (0008)
        found = [d for d in found if validation_logs.name not in repr(d)]
    assert found == []
