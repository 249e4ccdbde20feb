"""Clusters of real `peakshop serve` processes on each backend, and the HTTP steps the
invariant tests share."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.engine import make_url

from peakshop.config import Settings
from tests.conftest import ADMIN, SERVICE, _pg_admin, make_settings, settings_env
from tests.fixtures.factories import validate_request
from tests.fixtures.ledger import CouponLedger, redis_usage
from tests.fixtures.processes import ServerProcess, spawn_server

# The periodic full reload of the coupon index is a safety net; set far beyond any test's
# duration so that only the broadcast can explain a change seen by another process.
NO_SAFETY_NET = 600.0

BACKEND_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("scaled", id="scaled", marks=[pytest.mark.postgres, pytest.mark.redis]),
]


@dataclass
class Cluster:
    """Server processes sharing one system of record (and one Redis in scaled mode)."""

    backend: str
    settings: Settings
    servers: list[ServerProcess]

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def redis_url(self) -> str | None:
        return self.settings.redis_url

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def url_for(self, index: int) -> str:
        """Round-robin: request ``index`` goes to this server."""
        return self.servers[index % len(self.servers)].url


def cluster_settings(
    database_url: str, redis_url: str | None, tmp_path: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "validation_log_dead_letter_path": str(tmp_path / "dead-letters.jsonl"),
        "coupon_index_refresh_seconds": NO_SAFETY_NET,
    }
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


@contextlib.contextmanager
def running_cluster(
    backend: str,
    settings: Settings,
    *,
    count: int,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    env = {**settings_env(settings), **(extra_env or {})}
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(spawn_server(env, log_dir=log_dir)) for _ in range(count)]
        yield Cluster(backend=backend, settings=settings, servers=servers)


def servers_for(backend: str) -> int:
    """Scaled mode runs two processes; the embedded and PostgreSQL-only modes keep hot state
    in the process, so they run one."""
    return 2 if backend == "scaled" else 1


# --- databases for clusters that may outlive one test (module scope) -----------------------


@contextlib.contextmanager
def fresh_database(
    backend: str, request: pytest.FixtureRequest, tmp_dir: Path
) -> Iterator[tuple[str, str | None]]:
    """A fresh migrated database, and in scaled mode the session's Redis, flushed. Usable from
    fixtures of any scope (the shared ``sqlite_url``/``postgres_url`` are per test)."""
    if backend == "sqlite":
        path = tmp_dir / "peakshop.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}", None
        return
    server_url = request.getfixturevalue("postgres_server_url")
    template = request.getfixturevalue("postgres_template")
    name = f"peakshop_inv_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    redis_url = None
    if backend == "scaled":
        redis_url = request.getfixturevalue("redis_server_url")
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
    try:
        yield (
            make_url(server_url).set(database=name).render_as_string(hide_password=False),
            redis_url,
        )
    finally:
        asyncio.run(_pg_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def module_cluster(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp_dir = tmp_path_factory.mktemp(f"cluster-{backend}")
    with (
        fresh_database(backend, request, tmp_dir) as (database_url, redis_url),
        running_cluster(
            backend,
            cluster_settings(database_url, redis_url, tmp_dir),
            count=servers_for(backend),
            log_dir=tmp_dir,
        ) as cluster,
    ):
        yield cluster


# --- HTTP steps -------------------------------------------------------------------------


async def create_coupon(base_url: str, coupon: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=30) as client:
        response = await client.post("/api/v1/coupons", json=coupon)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def patch_coupon(base_url: str, code: str, changes: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=30) as client:
        response = await client.patch(f"/api/v1/coupons/{code}", json=changes)
    assert response.status_code == 200, response.text
    patched: dict[str, Any] = response.json()
    return patched


async def validate(
    client: httpx.AsyncClient, base_url: str, code: str, user_id: str
) -> dict[str, Any]:
    response = await client.post(
        f"{base_url}/api/v1/coupons/validate",
        json=validate_request(code, user_id),
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reasons_everywhere(cluster: Cluster, code: str, user_id: str) -> list[str | None]:
    """The validation reason for (code, user) as each server process answers it."""
    async with httpx.AsyncClient(timeout=30) as client:
        return [(await validate(client, url, code, user_id))["reason"] for url in cluster.urls]


async def poll_until(
    client: httpx.AsyncClient,
    base_url: str,
    code: str,
    user_id: str,
    accept: Callable[[dict[str, Any]], bool],
    *,
    started: float,
    deadline: float,
) -> tuple[float, dict[str, Any]]:
    """Validate every 5 ms until ``accept(body)``; (seconds since ``started``, body). Fails
    with the last answer when ``deadline`` seconds have passed."""
    body: dict[str, Any] = {}
    while True:
        body = await validate(client, base_url, code, user_id)
        elapsed = time.monotonic() - started
        if accept(body):
            return elapsed, body
        if elapsed > deadline:
            pytest.fail(f"{base_url} still answers {body} after {elapsed:.2f}s")
        await asyncio.sleep(0.005)


async def assert_hot_counters_match(cluster: Cluster, ledger: CouponLedger) -> None:
    """Scaled mode: the Redis usage counters that validation reads agree with the database."""
    if cluster.redis_url is None:
        return
    total, per_user = await redis_usage(cluster.redis_url, ledger.coupon_id)
    assert total == ledger.used_count, (
        f"Redis total {total} != used_count {ledger.used_count} in the database"
    )
    assert per_user == ledger.user_counters
