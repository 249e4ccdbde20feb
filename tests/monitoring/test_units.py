"""The monitor's parts on their own: per-second request numbers, the hour of history and its
memory, alert hysteresis, the memory trend and its leak verdict on synthetic series."""

from __future__ import annotations

import gc
import math
import random
import tracemalloc
from datetime import UTC, datetime

import pytest

from peakshop.monitoring.alerts import RECENT, Alerts
from peakshop.monitoring.history import CAPACITY, History
from peakshop.monitoring.memory import MemoryTrend, least_squares
from peakshop.monitoring.requests import RequestStats
from peakshop.monitoring.schemas import LatencyMs, QueueNumbers, SaleStock, Snapshot

MIB = 1024 * 1024
HISTORY_BUDGET = 20 * MIB  # the target for one hour of samples


def snapshot(i: int, sales: int = 5) -> Snapshot:
    return Snapshot(
        pid=1234,
        requests_per_second=1000.0 + i,
        error_rate=0.001,
        latency_ms=LatencyMs(p50=1.5, p95=4.2 + i % 7, p99=None if i % 2 else 9.9),
        queue=QueueNumbers(depth=i, in_flight=3, dead_letters=i // 100),
        validation_log_queue=i % 100,
        cache_hit_rate=None if i % 3 == 0 else 0.93,
        rss_bytes=150 * MIB + i * 4096,
        event_loop_lag_ms=0.25,
        sales=[
            SaleStock(sale_id=s, remaining=10_000 - i, reserved=i % 50, sold=i)
            for s in range(1, sales + 1)
        ],
        alerts_active=i % 2,
        client_error_rate=0.02,
    )


# --- per-second request numbers ------------------------------------------------------------


def test_percentiles_are_within_the_buckets_precision() -> None:
    stats = RequestStats()
    latencies = [i / 100_000 for i in range(1, 10_001)]  # 10 us .. 100 ms, uniform
    random.Random(7).shuffle(latencies)
    for seconds in latencies:
        stats.record(seconds, 200)
    second = stats.rotate()
    assert second.requests == 10_000
    for share in (0.50, 0.95, 0.99):
        exact = sorted(latencies)[math.ceil(share * len(latencies)) - 1]
        measured = second.percentile(share)
        assert measured is not None
        assert abs(measured - exact) / exact < 0.026, (share, measured, exact)


def test_rotation_starts_a_new_interval_and_counts_classes() -> None:
    stats = RequestStats()
    for status in (200, 201, 404, 429, 500, 503, 302):
        stats.record(0.001, status)
    second = stats.rotate()
    assert (second.requests, second.client_errors, second.server_errors) == (7, 2, 2)
    empty = stats.rotate()
    assert (empty.requests, empty.percentile(0.99)) == (0, None)
    stats.record(1e-9, 200)  # below the first bucket, and past the last one
    stats.record(1e6, 200)
    extremes = stats.rotate()
    assert extremes.percentile(0.01) == pytest.approx(1e-5)
    assert extremes.percentile(1.0) == pytest.approx(100.0, rel=0.06)


# --- history -----------------------------------------------------------------------------------


def test_an_hour_of_history_fits_the_memory_budget() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = History(pid=1234)
        for i in range(CAPACITY):  # every sample different, five open sales each
            history.append(1_000_000.0 + i, snapshot(i))
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"\none hour of history ({CAPACITY} samples, 5 sales each): {used / MIB:.2f} MiB")
    assert len(history) == CAPACITY
    assert used < HISTORY_BUDGET
    assert used < 2 * MIB  # what the columns are designed for; 20 MiB is the outer target


def test_history_is_bounded_to_the_last_hour_oldest_out_first() -> None:
    history = History(pid=1234)
    for i in range(CAPACITY + 400):
        history.append(1_000_000.0 + i, snapshot(i, sales=1))
    assert len(history) == CAPACITY
    kept = history.since(0.0)
    assert len(kept) == CAPACITY
    assert kept[0][0] == 1_000_400.0  # the 400 oldest went
    assert kept[-1][0] == 1_000_000.0 + CAPACITY + 399
    assert kept[-1][1] == snapshot(CAPACITY + 399, sales=1)  # rebuilt exactly, nulls too
    assert kept[-2][1] == snapshot(CAPACITY + 398, sales=1)
    last_minute = history.since(1_000_000.0 + CAPACITY + 340)
    assert len(last_minute) == 60
    assert history.int_ago("depth", 60, default=-1) == CAPACITY + 340
    history.clear()
    assert (len(history), history.since(0.0)) == (0, [])
    assert history.int_ago("depth", 60, default=-1) == -1


# --- alerts ------------------------------------------------------------------------------------


def evaluate(alerts: Alerts, over: bool, value: float = 1.0) -> str | None:
    event = alerts.evaluate(
        "high_error_rate",
        over=over,
        value=value,
        threshold=0.05,
        severity="critical",
        message="5xx",
        at=datetime.now(UTC),
    )
    return None if event is None else event.state


def test_an_alert_fires_after_k_seconds_over_and_resolves_after_k_under() -> None:
    alerts = Alerts(pid=1, for_seconds=3)
    assert [evaluate(alerts, over) for over in (True, True, False, True, True)] == [None] * 5
    assert evaluate(alerts, True) == "firing"  # three in a row
    assert alerts.active_count == 1
    assert [evaluate(alerts, over) for over in (False, False, True, False, False)] == [None] * 5
    assert alerts.is_firing("high_error_rate")  # a single second back over restarts the count
    assert evaluate(alerts, False, value=0.0) == "resolved"
    assert alerts.active_count == 0
    states = [(r.name, r.state, r.severity) for r in alerts.recent_newest_first()]
    assert states == [
        ("high_error_rate", "resolved", "critical"),
        ("high_error_rate", "firing", "critical"),
    ]


def test_recent_alerts_are_bounded() -> None:
    alerts = Alerts(pid=1, for_seconds=1)
    for i in range(RECENT * 3):
        assert evaluate(alerts, i % 2 == 0) in ("firing", "resolved")
    assert len(alerts.recent_newest_first()) == RECENT
    alerts.reset()
    assert alerts.recent_newest_first() == []


# --- memory trend --------------------------------------------------------------------------


def test_least_squares_of_an_exact_line() -> None:
    trend = least_squares([(x, 3.0 * x + 7.0) for x in range(10)])
    assert trend is not None
    assert trend.slope_per_second == pytest.approx(3.0)
    assert trend.r2 == pytest.approx(1.0)
    flat = least_squares([(x, 5.0) for x in range(10)])
    assert flat is not None and (flat.slope_per_second, flat.r2) == (0.0, 0.0)
    assert least_squares([(1.0, 1.0), (2.0, 2.0)]) is None


def memory_trend() -> MemoryTrend:
    return MemoryTrend(
        window=600.0, interval=10.0, slope_per_minute=1 * MIB, min_r2=0.8, min_bytes=256 * MIB
    )


def feed(trend: MemoryTrend, series: list[float]) -> None:
    for i, rss in enumerate(series):
        trend.add(10.0 * i, int(rss))


def test_a_steady_climb_is_a_suspected_leak() -> None:
    noise = random.Random(3)
    trend = memory_trend()  # 2 MiB a minute from 300 MiB, with 0.5 MiB of noise
    feed(trend, [300 * MIB + i * MIB / 3 + noise.uniform(-0.5, 0.5) * MIB for i in range(60)])
    fitted = trend.trend()
    assert fitted is not None
    assert fitted.slope_per_minute == pytest.approx(2 * MIB, rel=0.1)
    assert fitted.r2 > 0.95
    assert trend.suspected()


@pytest.mark.parametrize(
    "series",
    [
        pytest.param([400 * MIB] * 60, id="flat"),
        pytest.param(
            [400 * MIB + (i % 6) * 20 * MIB for i in range(60)], id="sawtooth-allocate-and-free"
        ),
        pytest.param([300 * MIB + i * MIB / 30 for i in range(60)], id="too-slow"),
        pytest.param([100 * MIB + i * MIB / 3 for i in range(60)], id="under-the-rss-floor"),
        pytest.param([300 * MIB + i * MIB for i in range(20)], id="too-few-samples-yet"),
    ],
)
def test_what_is_not_a_leak(series: list[float]) -> None:
    trend = memory_trend()
    feed(trend, series)
    assert not trend.suspected()


def test_the_trend_only_looks_at_its_window() -> None:
    trend = memory_trend()
    feed(trend, [300 * MIB + i * 2 * MIB for i in range(60)])  # climbing for ten minutes
    assert trend.suspected()
    for i in range(60, 130):  # then flat for more than the window
        trend.add(10.0 * i, 420 * MIB)
    assert not trend.suspected()
