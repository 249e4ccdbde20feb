"""Shared fixtures: real SQLite, PostgreSQL and Redis; an in-process app; real server processes.

Every test gets a fresh database: SQLite copies a migrated template file, PostgreSQL
creates a database from a migrated template database; Redis is flushed between tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from peakshop import migrate
from peakshop.app import create_app
from peakshop.config import RATE_LIMIT_FIELDS, Settings, load_settings
from peakshop.db import log_database_path
from tests.fixtures.servers import throwaway_postgres, throwaway_redis, unavailable

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SERVICE_TOKEN = "test-service-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def make_settings(database_url: str, redis_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "admin_token": ADMIN_TOKEN,
        "service_token": SERVICE_TOKEN,
        "log_level": "WARNING",
        "migrate_on_start": False,
        # Off unless a test opts in (tests/state/test_limiter.py): tests poll and hammer one
        # user far beyond what a storefront would, and a 429 there would test nothing.
        **dict.fromkeys(RATE_LIMIT_FIELDS, ""),
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as PEAKSHOP_* variables, for a server process."""
    env = {
        "PEAKSHOP_ENV": settings.env.value,
        "PEAKSHOP_DATABASE_URL": settings.database_url,
        "PEAKSHOP_ADMIN_TOKEN": settings.admin_token,
        "PEAKSHOP_SERVICE_TOKEN": settings.service_token,
        "PEAKSHOP_LOG_LEVEL": settings.log_level,
        "PEAKSHOP_VALIDATION_LOG_FLUSH_INTERVAL": str(settings.validation_log_flush_interval),
        "PEAKSHOP_VALIDATION_LOG_DEAD_LETTER_PATH": settings.validation_log_dead_letter_path,
        "PEAKSHOP_COUPON_INDEX_REFRESH_SECONDS": str(settings.coupon_index_refresh_seconds),
        **{f"PEAKSHOP_{name.upper()}": getattr(settings, name) for name in RATE_LIMIT_FIELDS},
    }
    if settings.redis_url:
        env["PEAKSHOP_REDIS_URL"] = settings.redis_url
    return env


# --- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url = os.environ.get("POSTGRES_TEST_URL")
    if url:
        yield url
        return
    with throwaway_postgres() as started:
        if started is None:
            unavailable("PostgreSQL: set POSTGRES_TEST_URL or install PostgreSQL (pg_ctl)")
        assert started is not None
        yield started


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    url = os.environ.get("REDIS_TEST_URL")
    if url:
        yield url
        return
    with throwaway_redis() as started:
        if started is None:
            unavailable("Redis: set REDIS_TEST_URL or install redis-server")
        assert started is not None
        yield started


def _pg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: str) -> Iterator[str]:
    name = f"peakshop_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(postgres_server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(make_settings(url))
    yield name
    asyncio.run(_pg_admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_server_url: str, postgres_template: str) -> Iterator[str]:
    name = f"peakshop_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _pg_admin(postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    )
    yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_pg_admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(make_settings(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "peakshop.db"
    shutil.copyfile(sqlite_template, path)
    shutil.copyfile(log_database_path(str(sqlite_template)), log_database_path(str(path)))
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_url


# --- settings per backend -----------------------------------------------------------------

BACKENDS = ["sqlite", "postgres", "scaled"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the backend under test: sqlite (embedded), postgres (PostgreSQL with
    in-process hot state) and scaled (PostgreSQL + Redis)."""
    dead_letters = str(tmp_path / "dead-letters.jsonl")
    if backend == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        return make_settings(url, validation_log_dead_letter_path=dead_letters)
    url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_url") if backend == "scaled" else None
    return make_settings(url, redis_url, validation_log_dead_letter_path=dead_letters)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app in-process (lifespan included) with a real database behind it."""
    app = create_app(settings)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def shop_settings(settings: Settings, **overrides: Any) -> Settings:
    """The whole shop in one process: the queue worked in-process (scaled mode too), no rate
    limits, fast retries."""
    values: dict[str, Any] = {
        "worker_in_process": True,
        "rate_limit_orders_per_user": "",
        "rate_limit_orders_per_ip": "",
        "order_job_retry_base_delay": 0.01,
        "order_job_retry_max_delay": 0.05,
    }
    values.update(overrides)
    return settings.replace(**values)


@pytest.fixture
async def shop(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(shop_settings(settings))) as test_client:
        yield test_client
