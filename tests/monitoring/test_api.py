"""The monitoring API on every backend, in-process: counters and the monitor's numbers after
known traffic, history bounds, reset, alerts firing and resolving, the benchmark report,
request ids, the memory section of /health."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from tests.conftest import ADMIN, SERVICE, make_settings
from tests.coupons.support import VALIDATE, Client, create_coupon, metric
from tests.fixtures.factories import iso, time_window_coupon, unique_code
from tests.monitoring.support import SNAPSHOT_KEYS, epoch, samples_after

API = "/api/v1/monitoring"


@pytest.fixture
async def tuned(settings: Settings, tmp_path: Path) -> AsyncIterator[Client]:
    """The app with a benchmark folder of its own."""
    tuned = settings.replace(bench_results_dir=str(tmp_path / "results"))
    async with AsyncTestClient(app=create_app(tuned)) as client:
        yield client


async def prometheus(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_known_traffic_moves_the_counters_and_the_snapshot(client: Client) -> None:
    valid = await create_coupon(client, time_window_coupon())
    minimum = await create_coupon(client, time_window_coupon(min_order_total="50.00"))
    inactive = await create_coupon(client, time_window_coupon(status="inactive"))
    calls = [
        (valid["code"], "100.00"),
        (valid["code"], "20.00"),
        (valid["code"], "30.00"),
        (unique_code("NONE"), "100.00"),
        (unique_code("NONE"), "100.00"),
        (minimum["code"], "20.00"),
        (inactive["code"], "100.00"),
    ]
    # A tick boundary first: the samples after it hold this test's requests and nothing else
    # (the monitoring API and /metrics are not counted as traffic).
    marker = (await samples_after(client, time.time(), 1))[-1]
    before = await prometheus(client)

    for code, total in calls:
        body = {"code": code, "user_id": "user_0000001", "order_total": total}
        assert (await client.post(VALIDATE, json=body, headers=SERVICE)).status_code == 200
    for bad in ({"code": "X"}, {"code": valid["code"], "user_id": "u", "order_total": "-1"}):
        assert (await client.post(VALIDATE, json=bad, headers=SERVICE)).status_code == 400
    sent_at = time.time()

    after = await prometheus(client)
    await samples_after(client, sent_at, 1)  # the tick after the last request
    samples = await samples_after(client, epoch(marker["at"]), 1)

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    expected = {"valid": 3, "not_found": 2, "min_order_total": 1, "inactive": 1}
    for reason, count in expected.items():
        assert moved("peakshop_coupon_validations_total", reason=reason) == count, reason
    route = {"method": "POST", "route": VALIDATE}
    assert moved("peakshop_http_requests_total", **route, status="200") == 7
    assert moved("peakshop_http_requests_total", **route, status="400") == 2
    assert moved("peakshop_http_request_duration_seconds_count", **route, status="200") == 7

    data = [sample["data"] for sample in samples]
    assert all(set(d) == SNAPSHOT_KEYS for d in data)
    requests = sum(d["requests_per_second"] for d in data)  # one-second samples
    client_errors = sum(d["requests_per_second"] * d["client_error_rate"] for d in data)
    assert round(requests) == 9, data
    assert round(client_errors) == 2, data
    assert all(d["error_rate"] == 0 for d in data)
    busy = [d for d in data if d["requests_per_second"] > 0]
    assert busy and all(d["latency_ms"]["p50"] is not None for d in busy)
    assert all(d["latency_ms"]["p50"] <= d["latency_ms"]["p99"] for d in busy)
    assert all(d["latency_ms"]["p99"] is None for d in data if d["requests_per_second"] == 0)


async def test_latest_snapshot_history_bounds_and_reset(client: Client) -> None:
    latest = await client.get(f"{API}/metrics", headers=ADMIN)
    assert latest.status_code == 200
    body = latest.json()
    assert set(body) == {"type", "at", "data", "recent_alerts"}
    assert body["type"] == "metrics-update"
    assert set(body["data"]) == SNAPSHOT_KEYS
    assert body["data"]["pid"] == os.getpid()  # in-process: the test's own process
    assert body["data"]["rss_bytes"] > 0
    assert set(body["data"]["queue"]) == {"depth", "in_flight", "dead_letters"}

    samples = await samples_after(client, time.time() - 60, 3)
    stamps = [epoch(sample["at"]) for sample in samples]
    assert stamps == sorted(stamps)
    assert all(0.5 < b - a < 1.6 for a, b in itertools.pairwise(stamps))
    for minutes in ("0", "61", "-1", "soon"):
        response = await client.get(f"{API}/history?minutes={minutes}", headers=ADMIN)
        assert response.status_code == 400, minutes
        assert response.json()["error"]["field"] == "minutes"
    whole = (await client.get(f"{API}/history?minutes=60", headers=ADMIN)).json()
    assert whole["interval_seconds"] == 1.0 and len(whole["snapshots"]) <= 3600

    reset = await client.post(f"{API}/metrics/reset", headers=ADMIN)
    assert reset.status_code == 200
    assert reset.json() == {"reset": True, "pid": os.getpid()}
    left = (await client.get(f"{API}/history?minutes=60", headers=ADMIN)).json()["snapshots"]
    assert len(left) <= 1  # a tick may land between the reset and the read


@pytest.mark.parametrize("path", ["metrics", "history", "alerts", "benchmark"])
async def test_the_monitoring_api_needs_the_admin_token(client: Client, path: str) -> None:
    assert (await client.get(f"{API}/{path}")).status_code == 401
    assert (await client.get(f"{API}/{path}", headers=SERVICE)).status_code == 403
    assert (await client.post(f"{API}/metrics/reset", headers=SERVICE)).status_code == 403


async def test_the_newest_benchmark_report(tuned: Client, tmp_path: Path) -> None:
    results = tmp_path / "results"
    assert (await tuned.get(f"{API}/benchmark", headers=ADMIN)).status_code == 404
    results.mkdir()
    assert (await tuned.get(f"{API}/benchmark", headers=ADMIN)).status_code == 404
    (results / "validate.json").write_text('{"scenario": "validate", "rps": 4276}')
    newer = results / "flash.json"
    newer.write_text('{"scenario": "flash", "rps": 9000}')
    os.utime(results / "validate.json", (time.time() - 60, time.time() - 60))
    (results / "notes.txt").write_text("not a report")

    newest = await tuned.get(f"{API}/benchmark", headers=ADMIN)
    assert newest.status_code == 200
    assert newest.json()["file"] == "flash.json"
    assert newest.json()["report"] == {"scenario": "flash", "rps": 9000}
    named = await tuned.get(f"{API}/benchmark?file=validate.json", headers=ADMIN)
    assert named.json()["report"] == {"scenario": "validate", "rps": 4276}
    for name in ("../results/flash.json", "notes.txt", "missing.json"):
        response = await tuned.get(f"{API}/benchmark", params={"file": name}, headers=ADMIN)
        assert response.status_code == 404, name

    (results / "partial.json").write_text('{"scenario": "being writ')  # newest, unfinished
    assert (await tuned.get(f"{API}/benchmark", headers=ADMIN)).json()["file"] == "flash.json"


async def test_request_ids(client: Client) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    generated = first.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", generated)
    assert second.headers["x-request-id"] != generated
    mine = {"X-Request-ID": "checkout-7f3a:42"}
    assert (await client.get("/health", headers=mine)).headers["x-request-id"] == mine[
        "X-Request-ID"
    ]
    for bad in ("x" * 129, "has space", 'quote"d', "semi;colon"):
        echoed = (await client.get("/health", headers={"X-Request-ID": bad})).headers
        assert echoed["x-request-id"] != bad
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", echoed["x-request-id"])
    # The thin ASGI handler and an unknown path carry one too.
    body = {"code": "NOPE", "user_id": "u", "order_total": "1.00"}
    validated = await client.post(VALIDATE, json=body, headers={**SERVICE, **mine})
    assert validated.headers["x-request-id"] == mine["X-Request-ID"]
    assert "x-request-id" in (await client.get("/no/such/path")).headers


async def test_health_reports_memory(client: Client) -> None:
    memory = (await client.get("/health")).json()["memory"]
    assert memory["rss_bytes"] > 10 * 1024 * 1024
    assert memory["suspected"] is False
    assert memory["heap_bytes"] is None  # tracemalloc is off by default
    assert memory["window_seconds"] == 600.0


async def test_process_metrics_are_exported(client: Client) -> None:
    text = await prometheus(client)
    assert metric(text, "process_resident_memory_bytes") > 0  # prometheus-client's own
    await samples_after(client, time.time(), 1)  # the monitor has ticked
    text = await prometheus(client)
    assert metric(text, "peakshop_process_resident_memory_bytes") > 0
    assert "peakshop_event_loop_lag_distribution_seconds_count" in text
    assert "python_gc_collections_total" in text  # prometheus-client's GC collector


async def test_flash_sale_gauges_follow_the_open_sales(client: Client) -> None:
    product = await client.post(
        "/api/v1/inventory", json={"name": "G", "price": "5.00", "stock": 20}, headers=ADMIN
    )
    now = datetime.now(UTC)
    sale = await client.post(
        "/api/v1/flash-sales",
        json={
            "product_id": product.json()["id"],
            "price": "1.00",
            "quantity": 7,
            "starts_at": iso(now - timedelta(minutes=1)),
            "ends_at": iso(now + timedelta(hours=1)),
            "per_user_limit": 1,
        },
        headers=ADMIN,
    )
    assert sale.status_code == 201, sale.text
    sale_id = str(sale.json()["id"])
    await samples_after(client, time.time(), 1)
    text = await prometheus(client)
    assert metric(text, "peakshop_flash_sale_remaining", sale_id=sale_id) == 7
    assert f'peakshop_flash_sale_sold{{sale_id="{sale_id}"}} 0.0' in text
    latest = (await client.get(f"{API}/metrics", headers=ADMIN)).json()["data"]
    assert {"sale_id": int(sale_id), "remaining": 7, "reserved": 0, "sold": 0} in latest["sales"]


@pytest.fixture
async def alerting(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    """Embedded, with a P99 threshold every request exceeds and a two-second hysteresis."""
    settings = make_settings(
        sqlite_url,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
        alert_p99_ms=0.0001,
        alert_for_seconds=2,
        # The app runs inside the test process, whose RSS late in a full run says nothing
        # about this test: keep the memory alert out of it.
        alert_rss_mb=1_000_000,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def active_alerts(client: Client) -> dict[str, Any]:
    response = await client.get(f"{API}/alerts", headers=ADMIN)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_an_alert_fires_under_traffic_and_resolves_after_it(alerting: Client) -> None:
    deadline = time.monotonic() + 15
    while not (await active_alerts(alerting))["active"]:
        assert time.monotonic() < deadline, "the P99 alert did not fire"
        assert (await alerting.get("/health")).status_code == 200
        await asyncio.sleep(0.05)
    active = (await active_alerts(alerting))["active"]
    assert [alert["name"] for alert in active] == ["high_latency_p99"]
    assert active[0]["severity"] == "warning" and active[0]["threshold"] == 0.0001
    latest = (await alerting.get(f"{API}/metrics", headers=ADMIN)).json()
    assert latest["recent_alerts"][0]["state"] == "firing"
    assert latest["data"]["alerts_active"] == 1

    deadline = time.monotonic() + 15  # no more traffic: under the threshold from now on
    while (body := await active_alerts(alerting))["active"]:
        assert time.monotonic() < deadline, "the P99 alert did not resolve"
        await asyncio.sleep(0.2)
    transitions = [(r["name"], r["state"]) for r in body["alerts"]]
    assert transitions == [("high_latency_p99", "resolved"), ("high_latency_p99", "firing")]
    assert body["alerts"][0]["pid"] == os.getpid()
