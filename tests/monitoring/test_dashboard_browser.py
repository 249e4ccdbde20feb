"""The dashboard in headless Chromium against a real ``peakshop serve`` (embedded mode): it
loads without errors, its charts move while load runs, and an alert shows when a threshold
is crossed.

PEAKSHOP_DASHBOARD_SCREENSHOT=docs/dashboard.png writes the README's screenshot; by default
it goes to the test's temporary folder (a test run leaves the work tree alone).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN, make_settings, settings_env
from tests.fixtures.browser import chromium, chromium_path, watched_page
from tests.fixtures.processes import ServerProcess, spawn_server
from tests.fixtures.traffic import Traffic, create_sale

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

# The P99 alert's threshold is set so low here (50 µs) that any traffic crosses it after the
# alert's 3 s hold, and an idle server (no requests, no P99) does not.
ALERT_NAME = "high_latency_p99"
ALERT_ENV = {"PEAKSHOP_ALERT_P99_MS": "0.05"}
MOVE_WITHIN_S = 3.0


@pytest.fixture(scope="module")
def server(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    chromium_path()  # skip (or fail under CI) before starting anything
    workdir = tmp_path_factory.mktemp("dashboard")
    shutil.copyfile(sqlite_template, workdir / "peakshop.db")
    settings = make_settings(
        f"sqlite+aiosqlite:///{workdir / 'peakshop.db'}",
        validation_log_dead_letter_path=str(workdir / "dead-letters.jsonl"),
    )
    with spawn_server(settings_env(settings) | ALERT_ENV, log_dir=workdir) as process:
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as started:
        yield started


def chart(page: Page, name: str) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate("(name) => window.__peakshop.chart(name)", name)
    return info


def wait_until(page: Page, predicate: str, *, timeout: float, arg: Any = None) -> None:
    """Wait for a JavaScript predicate, given as a function (the page's CSP forbids eval)."""
    page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000)


def open_live(page: Page, url: str) -> None:
    page.goto(f"{url}/dashboard?token={ADMIN_TOKEN}")
    wait_until(page, "() => window.__peakshop.status() === 'live'", timeout=10)


def test_page_loads_asks_for_the_token_and_connects_without_errors(
    server: ServerProcess, browser: Browser
) -> None:
    with watched_page(browser) as (page, problems):
        page.goto(f"{server.url}/dashboard")
        assert page.is_visible("#token-form")
        page.fill("#token-input", ADMIN_TOKEN)
        page.click("#token-form button[type=submit]")
        wait_until(page, "() => window.__peakshop.status() === 'live'", timeout=10)
        wait_until(page, "() => window.__peakshop.chart('rps').points >= 2", timeout=5)
        assert page.is_hidden("#token-form")
        assert page.evaluate("sessionStorage.length") == 1  # kept for this tab only
        for name in ("rps", "latency", "errors", "queue", "vlog", "cache", "rss"):
            assert chart(page, name)["points"] >= 2, name
        assert problems.items == []


def test_charts_move_within_seconds_while_load_runs(
    server: ServerProcess, browser: Browser
) -> None:
    sale_id = create_sale(server.url, quantity=5_000)
    with watched_page(browser) as (page, problems):
        open_live(page, server.url)
        assert "token=" not in page.url  # taken out of the address bar
        before = chart(page, "rps")["points"]
        with Traffic(server.url, rate=150, duration=10, sale_ids=(sale_id,)) as traffic:
            started = time.monotonic()
            # Well above what the page's own requests make (a handful a second).
            wait_until(
                page, "() => window.__peakshop.chart('rps').last[0] >= 50", timeout=MOVE_WITHIN_S
            )
            left = MOVE_WITHIN_S - (time.monotonic() - started)
            wait_until(
                page,
                "(sale) => { const c = window.__peakshop.chart('stock');"
                " const i = c.series.indexOf('#' + sale + ' sold'); return i >= 0 && c.last[i] > 0 }",
                arg=sale_id,
                timeout=max(left, 0.1),
            )
            moved_after = time.monotonic() - started
            wait_until(page, "() => window.__peakshop.chart('latency').last[2] !== null", timeout=3)
            points = chart(page, "rps")["points"]
            time.sleep(2)
            assert chart(page, "rps")["points"] > points  # still moving, a point a second
        assert moved_after <= MOVE_WITHIN_S
        assert chart(page, "rps")["points"] > before
        assert traffic.sent > 100
        remaining, reserved, sold = _sale_values(chart(page, "stock"), sale_id)
        assert remaining + reserved + sold == 5_000
        assert page.locator(f"#sales-table tr[data-sale='{sale_id}']").count() == 1
        assert problems.items == []


def _sale_values(stock: dict[str, Any], sale_id: int) -> tuple[int, int, int]:
    values = []
    for measure in ("remaining", "reserved", "sold"):
        values.append(int(stock["last"][stock["series"].index(f"#{sale_id} {measure}")]))
    return values[0], values[1], values[2]


def quiet_alerts(url: str) -> None:
    """Wait until no alert is firing (an idle server resolves them after the hold), then
    clear the list of recent transitions, so the page starts with none."""
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=url, headers=ADMIN, timeout=5) as client:
        while client.get("/api/v1/monitoring/alerts").json()["active"]:
            assert time.monotonic() < deadline, "alerts still firing on an idle server"
            time.sleep(0.5)
        assert client.post("/api/v1/monitoring/metrics/reset").status_code == 200


def test_alert_shows_when_the_p99_crosses_its_threshold(
    server: ServerProcess, browser: Browser, tmp_path: Path
) -> None:
    quiet_alerts(server.url)  # the earlier tests' traffic also crossed the low threshold
    sale_id = create_sale(server.url, quantity=2_000)
    with watched_page(browser, height=1200) as (page, problems):
        open_live(page, server.url)
        firing = f"#alert-list li[data-name='{ALERT_NAME}'][data-state='firing']"
        assert page.locator(firing).count() == 0
        with Traffic(
            server.url, rate=150, duration=20, sale_ids=(sale_id,), bad_share=0.3
        ) as traffic:
            page.wait_for_selector(firing, timeout=15_000)
            text = page.inner_text(firing)
            assert "firing" in text.lower()
            assert page.inner_text("#tile-alerts") != "0"
            time.sleep(3)  # a few more seconds of charts for the picture
            screenshot = Path(
                os.environ.get("PEAKSHOP_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png"
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        assert traffic.statuses.get(400, 0) > 0
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert problems.items == []  # the page's own requests: the 400s above are not its
