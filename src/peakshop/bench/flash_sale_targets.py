"""The targets of the orders and flash-sales issue, judged from one session's runs."""

from __future__ import annotations

from typing import Any

from peakshop.bench.report import Target
from peakshop.config import Mode, Settings

MIN_RATIO_TO_MINIMAL = 0.60  # hyper: admission throughput / the minimal app's, closed loop
MAX_P99_RATIO_TO_MINIMAL = 2.0  # hyper, open loop at 1,000/s: P99 / the minimal app's P99
MAX_DRAIN_S = 10.0  # the queue drains 10,000 winning orders
MIN_RATIO_TO_CONVENTIONAL = 3.0  # scaled mode / SELECT ... FOR UPDATE, throughput


def _run(runs: list[dict[str, Any]], server: str) -> dict[str, Any] | None:
    return next((r for r in runs if r["server"] == server), None)


def judge_scenario(
    scenario: str, runs: list[dict[str, Any]], *, settings: Settings, rate: float | None
) -> list[Target]:
    ours = runs[0]
    verdict = ours["verdict"]
    valid = ours["valid"]
    targets = [
        Target(
            name="oversold",
            description="units oversold (read from the database)",
            measured=float(verdict["oversold"]),
            limit=0,
            unit="units",
            higher_is_better=False,
            note="sold + reserved + remaining == quantity: "
            + ("yes" if verdict["conserved"] else "NO")
            + "; orders agree with the sale: "
            + ("yes" if verdict["orders_agree_with_sale"] else "NO"),
            from_valid_runs=verdict["conserved"] and verdict["orders_agree_with_sale"],
        ),
        Target(
            name="per_user_cap",
            description="most units held by one buyer (cap 1)",
            measured=float(verdict["max_units_per_user"]),
            limit=1,
            unit="units",
            higher_is_better=False,
        ),
    ]
    if scenario == "hyper":
        # Closed loop, the winners arrive at once: from the first order to the last
        # confirmation. Open loop, they arrive at the sending rate (10,000 at 1,000/s take
        # 10 s to arrive): what was left to drain when the last one arrived.
        if rate is None:
            drain = verdict["first_order_to_last_confirmed_s"]
            what = "first order to last confirmed"
        else:
            drain = verdict.get("last_order_to_last_confirmed_s")
            what = f"arriving at {rate:,.0f}/s: last order to last confirmed"
        targets.append(
            Target(
                name="drain",
                description=f"{verdict['quantity']:,} winners: {what}",
                measured=drain,
                limit=MAX_DRAIN_S,
                unit="s",
                higher_is_better=False,
                note=f"{settings.mode.value} mode; queue drained: {verdict['drained']}",
                from_valid_runs=bool(verdict["drained"]),
            )
        )
    minimal = _run(runs, "minimal")
    if scenario == "hyper" and minimal is not None:
        if rate is None:
            targets.append(
                Target(
                    name="admission_ratio",
                    description="admission throughput / minimal app, closed loop",
                    measured=ours["throughput_rps"] / minimal["throughput_rps"],
                    limit=MIN_RATIO_TO_MINIMAL,
                    unit="x",
                    higher_is_better=True,
                    note=f"{ours['throughput_rps']:,.0f} / {minimal['throughput_rps']:,.0f} answers/s",
                    from_valid_runs=valid and minimal["valid"],
                )
            )
        else:
            a, b = ours["latency_ms"]["p99"], minimal["latency_ms"]["p99"]
            targets.append(
                Target(
                    name="open_p99_ratio",
                    description=f"open loop {rate:,.0f}/s: P99 / minimal app P99",
                    measured=None if not a or not b else a / b,
                    limit=MAX_P99_RATIO_TO_MINIMAL,
                    unit="x",
                    higher_is_better=False,
                    note=f"P99 {a or 0:.3f} / {b or 0:.3f} ms",
                    from_valid_runs=valid and minimal["valid"],
                )
            )
    conventional = _run(runs, "conventional")
    if conventional is not None and settings.mode is Mode.SCALED:
        targets.append(
            Target(
                name="conventional_ratio",
                description="scaled mode / conventional FOR UPDATE, throughput",
                measured=ours["throughput_rps"] / conventional["throughput_rps"],
                limit=MIN_RATIO_TO_CONVENTIONAL,
                unit="x",
                higher_is_better=True,
                note=f"{ours['throughput_rps']:,.0f} / {conventional['throughput_rps']:,.0f} answers/s",
                from_valid_runs=valid and conventional["valid"],
            )
        )
    return targets
