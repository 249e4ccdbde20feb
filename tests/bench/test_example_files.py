"""The example profile and SLO files of benchmarks/ load as `peakshop bench run` reads them."""

from __future__ import annotations

from pathlib import Path

from peakshop.bench import profiles, slo

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_black_friday_profile_loads() -> None:
    profile = profiles.resolve(str(BENCHMARKS / "profiles" / "black-friday.toml"))
    assert profile.name == "black-friday"
    assert [p.name for p in profile.phases] == ["warm-up", "ramp", "peak", "cool-down"]
    assert [p.measured for p in profile.phases] == [False, True, True, True]
    ramp, peak, cool = profile.phases[1:]
    assert ramp.start_rate < ramp.end_rate == peak.start_rate == peak.end_rate
    assert cool.start_rate > cool.end_rate
    assert profile.duration == 12 * 60


def test_storefront_slo_loads() -> None:
    loaded = slo.load(BENCHMARKS / "slo" / "storefront.toml")
    assert loaded.run.p99_ms is not None and loaded.run.error_rate is not None
    assert loaded.run.min_throughput_rps is not None
    assert set(loaded.endpoints) == {
        "GET /api/v1/products",
        "GET /api/v1/products/{id}",
        "POST /api/v1/coupons/validate",
        "POST /api/v1/orders",
    }
    assert all(t.p99_ms is not None for t in loaded.endpoints.values())
