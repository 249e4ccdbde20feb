"""Report generation streams: its peak memory does not grow with the number of rows (measured
with tracemalloc, as ``benchmarks/report_memory.py`` does at 200k and 1M orders), and a
long report keeps its job's lease."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from benchmarks.report_memory import insert_orders, measure
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.db import Database
from tests.conftest import ADMIN, make_settings, shop_settings
from tests.coupons.support import eventually

SMALL, LARGE = 10_000, 50_000
MiB = 2**20


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


async def test_peak_memory_is_flat_in_the_number_of_rows(database_url: str, tmp_path: Path) -> None:
    db = Database(make_settings(database_url))
    path = tmp_path / "sales.csv"
    try:
        await insert_orders(db, first=0, count=SMALL)
        small = await measure(db, path=path)
        await insert_orders(db, first=SMALL, count=LARGE - SMALL)
        large = await measure(db, path=path)
        everything = await measure(db, path=path, naive=True)
    finally:
        await db.dispose()
    assert (small["rows"], large["rows"], everything["rows"]) == (SMALL, LARGE, LARGE)
    peaks = [result["traced_peak_bytes"] / MiB for result in (small, large, everything)]
    # Five times the rows: the same peak, give or take noise (a few hundred kB).
    assert large["traced_peak_bytes"] < small["traced_peak_bytes"] * 1.25 + MiB / 2, peaks
    assert large["traced_peak_bytes"] < 8 * MiB, peaks
    # What the test tells apart: holding the rows grows with them.
    assert everything["traced_peak_bytes"] > 4 * large["traced_peak_bytes"], peaks


REPORT_ROWS = 150_000


async def test_a_report_longer_than_the_lease_runs_once(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Scaled mode: the stream redelivers a message held longer than the lease; the report job
    renews its lease, so the redelivery is skipped instead of starting the report again."""
    settings = shop_settings(
        make_settings(postgres_url, redis_url),
        job_lease_seconds=0.2,
        reports_dir=str(tmp_path / "reports"),
    )
    db = Database(settings)
    try:
        # Enough rows to outlive three leases on a fast machine too (60,000 took 0.52 s on
        # one; the check below would then be vacuous).
        await insert_orders(db, first=0, count=REPORT_ROWS)
    finally:
        await db.dispose()
    async with AsyncTestClient(app=create_app(settings)) as shop:
        body = {"type": "sales", "from": "2020-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}
        accepted = (await shop.post("/api/v1/reports", json=body, headers=ADMIN)).json()

        async def settled() -> dict[str, Any] | None:
            report: dict[str, Any] = (
                await shop.get(f"/api/v1/reports/{accepted['report_id']}", headers=ADMIN)
            ).json()
            return report if report["status"] in ("done", "failed") else None

        report = await eventually(settled, within=60, interval=0.1)
        job = (await shop.get(f"/api/v1/orders/jobs/{accepted['job_id']}", headers=ADMIN)).json()
    assert (report["status"], report["rows"]) == ("done", REPORT_ROWS)
    seconds = _at(report["finished_at"]) - _at(report["created_at"])
    assert seconds > 3 * settings.job_lease_seconds, "too fast to outlive the lease"
    assert (job["status"], job["attempts"]) == ("done", 1)


def _at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
