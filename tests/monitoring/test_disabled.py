"""PEAKSHOP_MONITORING_ENABLED=false (the "off" side of benchmarks/monitoring_overhead.py):
the shop, /health, /ready and /metrics keep working; no HTTP metric, per-second counter,
snapshot or live event is produced; the monitoring API answers 503 and the WebSocket closes
with 4503, so that nobody mistakes "off" for an idle server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient, TestClient

from peakshop.app import create_app
from peakshop.config import Settings, load_settings
from peakshop.monitoring.routes import CLOSE_MONITORING_OFF
from peakshop.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_TOKEN, SERVICE, make_settings
from tests.coupons.support import VALIDATE, Client, create_coupon, metric
from tests.fixtures.factories import time_window_coupon

API = "/api/v1/monitoring"


@pytest.fixture
async def off(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings.replace(monitoring_enabled=False))
    async with AsyncTestClient(app=app) as client:
        yield client


def runtime_of(client: Client) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


def test_the_setting_is_read_from_the_environment() -> None:
    assert load_settings(environ={}).monitoring_enabled is True
    off = load_settings(environ={"PEAKSHOP_MONITORING_ENABLED": "false"})
    assert off.monitoring_enabled is False


async def test_with_monitoring_off_the_shop_serves_and_measures_nothing(off: Client) -> None:
    coupon = await create_coupon(off, time_window_coupon())
    before = (await off.get("/metrics")).text
    body = {"code": coupon["code"], "user_id": "user_0000001", "order_total": "100.00"}
    response = await off.post(VALIDATE, json=body, headers=SERVICE)
    assert response.status_code == 200, response.text
    assert response.json()["valid"] is True
    assert response.headers["x-request-id"]  # logs keep their request ids

    scrape = await off.get("/metrics")
    assert scrape.status_code == 200
    after = scrape.text
    # Domain metrics are still counted; the HTTP instrumentation is not there at all.
    moved = metric(after, "peakshop_coupon_validations_total", reason="valid") - metric(
        before, "peakshop_coupon_validations_total", reason="valid"
    )
    assert moved == 1
    route = {"method": "POST", "route": VALIDATE, "status": "200"}
    assert metric(after, "peakshop_http_requests_total", **route) == metric(
        before, "peakshop_http_requests_total", **route
    )

    health = await off.get("/health")
    assert health.status_code == 200
    assert health.json()["memory"]["rss_bytes"] > 0  # the memory monitor stays on
    assert (await off.get("/ready")).status_code == 200

    monitor = runtime_of(off).monitor
    assert monitor.requests.requests == 0  # the per-second counters are not fed
    await asyncio.sleep(1.2)  # past a tick, had there been one
    assert len(monitor.history) == 0
    assert not runtime_of(off).live.listening


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API}/metrics"),
        ("GET", f"{API}/history?minutes=1"),
        ("GET", f"{API}/alerts"),
        ("POST", f"{API}/metrics/reset"),
    ],
)
async def test_the_monitoring_api_says_it_is_off(off: Client, method: str, path: str) -> None:
    refused = await off.request(method, path)
    assert refused.status_code == 401  # the token is checked first
    response = await off.request(method, path, headers=ADMIN)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "monitoring_disabled"
    assert "PEAKSHOP_MONITORING_ENABLED=false" in error["message"]


def test_the_live_events_socket_closes_with_4503(sqlite_url: str, tmp_path: Path) -> None:
    # The synchronous client: its WebSocket session runs on the loop that runs the app (the
    # async client's does not, and would hang).
    settings = make_settings(
        sqlite_url,
        monitoring_enabled=False,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
    )
    with (
        TestClient(app=create_app(settings)) as client,
        client.websocket_connect(f"/ws/monitoring?token={ADMIN_TOKEN}") as session,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        session.receive(timeout=5.0)
    assert closed.value.code == CLOSE_MONITORING_OFF
    assert closed.value.detail == "monitoring is turned off"
