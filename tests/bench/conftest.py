"""Fixtures of the bench tests."""

from __future__ import annotations

import pytest

from peakshop.config import Settings
from tests.conftest import make_settings


@pytest.fixture(params=["sqlite", "postgres"])
def seed_settings(request: pytest.FixtureRequest) -> Settings:
    return make_settings(request.getfixturevalue(f"{request.param}_url"))
