"""Fixtures of the coupons tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from tests.conftest import make_settings
from tests.coupons.support import Client


@pytest.fixture
async def logged_client(settings: Settings) -> AsyncIterator[Client]:
    """The app on the backend under test with a validation log flushed every 50 ms, so that
    tests can read what it wrote without waiting for the 5 s default."""
    app = create_app(settings.replace(validation_log_flush_interval=0.05))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
async def embedded_client(sqlite_url: str) -> AsyncIterator[Client]:
    """For what does not depend on the backend (OpenAPI, auth): SQLite only, to stay fast."""
    async with AsyncTestClient(app=create_app(make_settings(sqlite_url))) as test_client:
        yield test_client
