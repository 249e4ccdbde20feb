"""The flash-sale bench's verdict on the drain: closed loop from the first order, open loop
from the last one (its winners arrive over seconds at the sending rate)."""

from __future__ import annotations

from typing import Any

from peakshop.bench.flash_sale_targets import judge_scenario
from tests.conftest import make_settings


def _runs(first_to_last: float, last_to_last: float) -> list[dict[str, Any]]:
    verdict = {
        "oversold": 0,
        "conserved": True,
        "orders_agree_with_sale": True,
        "max_units_per_user": 1,
        "quantity": 10_000,
        "drained": True,
        "first_order_to_last_confirmed_s": first_to_last,
        "last_order_to_last_confirmed_s": last_to_last,
    }
    return [{"server": "peakshop", "verdict": verdict, "valid": True}]


def _drain(rate: float | None) -> Any:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    targets = judge_scenario("hyper", _runs(12.4, 1.7), settings=settings, rate=rate)
    return next(t for t in targets if t.name == "drain")


def test_closed_loop_drain_counts_from_the_first_order() -> None:
    drain = _drain(None)
    assert (drain.measured, drain.passed) == (12.4, False)
    assert "first order to last confirmed" in drain.description


def test_open_loop_drain_counts_from_the_last_order() -> None:
    drain = _drain(1000.0)
    assert (drain.measured, drain.passed) == (1.7, True)
    assert "arriving at 1,000/s: last order to last confirmed" in drain.description
