"""The reports API's answers to bad requests, wrong tokens and reports not ready (no worker
runs here, so a report stays queued)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from tests.conftest import ADMIN, SERVICE, make_settings
from tests.coupons.support import Client, count_rows

GOOD = {"type": "sales", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00+01:00"}


@pytest.fixture
async def idle_shop(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = make_settings(
        sqlite_url, worker_in_process=False, reports_dir=str(tmp_path / "reports")
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "type": "refunds"}, "type"),
        ({**GOOD, "format": "xlsx"}, "format"),
        ({"type": "sales", "to": GOOD["to"]}, "from"),
        ({"type": "coupons", "from": GOOD["from"]}, "to"),
        ({**GOOD, "to": GOOD["from"]}, "to"),
        ({**GOOD, "from": "2026-01-01T00:00:00"}, "from"),  # no offset: which day?
        ({**GOOD, "from": "yesterday"}, "from"),
        ({**GOOD, "limit": 10}, "limit"),
        ({"from": GOOD["from"], "to": GOOD["to"]}, "type"),
    ],
)
async def test_bad_report_requests_name_the_field(
    idle_shop: Client, sqlite_url: str, body: dict[str, Any], field: str
) -> None:
    response = await idle_shop.post("/api/v1/reports", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field, response.text
    settings = make_settings(sqlite_url)
    assert await count_rows(settings, "reports") == 0
    assert await count_rows(settings, "jobs") == 0


async def test_reports_are_for_admins(idle_shop: Client) -> None:
    assert (await idle_shop.post("/api/v1/reports", json=GOOD, headers=SERVICE)).status_code == 403
    assert (await idle_shop.post("/api/v1/reports", json=GOOD)).status_code == 401
    accepted = (await idle_shop.post("/api/v1/reports", json=GOOD, headers=ADMIN)).json()
    for path in (
        f"/api/v1/reports/{accepted['report_id']}",
        f"/api/v1/reports/{accepted['report_id']}/download",
    ):
        assert (await idle_shop.get(path, headers=SERVICE)).status_code == 403


async def test_a_queued_report_is_not_downloadable_yet(idle_shop: Client, sqlite_url: str) -> None:
    response = await idle_shop.post("/api/v1/reports", json=GOOD, headers=ADMIN)
    assert response.status_code == 202, response.text
    accepted = response.json()
    report = (await idle_shop.get(f"/api/v1/reports/{accepted['report_id']}", headers=ADMIN)).json()
    assert (report["status"], report["download_url"], report["rows"]) == ("queued", None, None)
    assert report["from"] == "2026-01-01T00:00:00Z"
    assert report["to"] == "2026-01-31T23:00:00Z"  # stored in UTC
    download = await idle_shop.get(
        f"/api/v1/reports/{accepted['report_id']}/download", headers=ADMIN
    )
    assert download.status_code == 409
    assert download.json()["error"]["code"] == "report_not_ready"
    assert download.json()["status"] == "queued"
    # The report and its job were written together.
    settings = make_settings(sqlite_url)
    assert await count_rows(settings, "jobs", id=accepted["job_id"], name="reports.generate") == 1


async def test_unknown_reports_are_404(idle_shop: Client) -> None:
    for path in ("/api/v1/reports/rpt_nope", "/api/v1/reports/rpt_nope/download"):
        response = await idle_shop.get(path, headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "report_not_found",
            "message": "no report with id 'rpt_nope'",
            "field": "report_id",
        }
