"""Helpers shared by the coupons tests: API calls, polling with a deadline, row counts, metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from peakshop.config import Settings
from peakshop.db import Database
from tests.conftest import ADMIN, SERVICE

T = TypeVar("T")
Client = AsyncTestClient[Any]
VALIDATE = "/api/v1/coupons/validate"


async def create_coupon(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/coupons", json=payload, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def get_coupon(client: Client, code: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/coupons/{code}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch_coupon(client: Client, code: str, changes: dict[str, Any]) -> dict[str, Any]:
    response = await client.patch(f"/api/v1/coupons/{code}", json=changes, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def validate(
    client: Client, code: str, user_id: str, order_total: Any = "100.00"
) -> dict[str, Any]:
    response = await client.post(
        VALIDATE,
        json={"code": code, "user_id": user_id, "order_total": order_total},
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def redeem(
    client: Client, code: str, user_id: str, order_id: str, order_total: Any = "100.00"
) -> httpx.Response:
    return await client.post(
        f"/api/v1/coupons/{code}/redeem",
        json={"user_id": user_id, "order_id": order_id, "order_total": order_total},
        headers=SERVICE,
    )


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = 5.0, interval: float = 0.02
) -> T:
    """Poll until ``check`` returns a truthy value; fail with the last value at the deadline."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)


async def wait_until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll a plain condition (e.g. a counter moved by a background task) with a deadline."""

    async def check() -> bool:
        return condition()

    await eventually(check, within=within, interval=0.005)


async def count_rows(settings: Settings, table: str, **where: Any) -> int:
    """Rows in a table, read with a connection of our own (not the app's); a ``Database`` of
    our own, because on SQLite the validation log is in a file its read connections attach."""
    db = Database(settings)
    try:
        query = sa.select(sa.func.count()).select_from(sa.table(table))
        for column, value in where.items():
            query = query.where(sa.column(column) == value)
        async with db.read() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()


async def fetch_rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    db = Database(settings)
    try:
        async with db.read() as conn:
            result = await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))
            return [dict(row) for row in result.mappings()]
    finally:
        await db.dispose()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        sample_name, _, label_text = sample.partition("{")
        if sample_name != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(value)
    return 0.0
