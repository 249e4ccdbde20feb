"""The targets of the coupon-validation issue ("Targets" section) and how each is judged
from the runs of one session; ``run_suite`` measures all of them end to end."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from peakshop.bench.report import Target
from peakshop.bench.servers import Server

if TYPE_CHECKING:
    from peakshop.bench.runner import Runner

# Targets of the issue ("Targets" section), 2-core machine, load generator on it too.
REFERENCE_REQUESTS = 1_000
REFERENCE_CONCURRENCY = 100
REFERENCE_RUNS = 3  # the figure is the median of 3
REFERENCE_MIN_RPS = 3_300.0
REFERENCE_MAX_P95_MS = 45.0
SUSTAINED_MIN_RATIO = 0.80  # peakshop / minimal app, closed loop
SUSTAINED_DURATION = 10.0
OPEN_RATE = 1_000.0
OPEN_DURATION = 20.0
OPEN_MAX_P99_RATIO = 1.5  # peakshop P99 / minimal app P99
BENCH_MIN_CLOSED_RPS = 5_000.0
BENCH_OPEN_RATE = 2_000.0
MAX_RSS_MB = 300.0
OPEN_CONNECTIONS = 256  # open loop: connections the sender may open at most


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def all_valid(runs: list[dict[str, Any]]) -> bool:
    return all(run["valid"] for run in runs)


def _invalid_note(runs: list[dict[str, Any]]) -> str:
    return "" if all_valid(runs) else "; from an INVALID run (see above)"


def rss_target(server: Server) -> tuple[Target, dict[str, Any]]:
    memory = server.memory()
    detail = {"after_run": memory, "peak_sampled_bytes": server.peak_rss}
    target = Target(
        name="server_rss",
        description="server RSS after the runs (all processes)",
        measured=memory["rss"] / 1e6,
        limit=MAX_RSS_MB,
        unit="MB",
        higher_is_better=False,
        note=f"peak sampled {server.peak_rss / 1e6:,.1f} MB; "
        + ", ".join(f"pid {p['pid']}: {p['rss'] / 1e6:,.1f}" for p in memory["processes"]),
    )
    return target, detail


def reference_targets(runs: list[dict[str, Any]], note: str) -> list[Target]:
    return [
        Target(
            name="reference_throughput",
            description="reference run throughput (median)",
            measured=median([r["throughput_rps"] for r in runs]),
            limit=REFERENCE_MIN_RPS,
            unit="req/s",
            higher_is_better=True,
            note=note + _invalid_note(runs),
            from_valid_runs=all_valid(runs),
        ),
        Target(
            name="reference_p95",
            description="reference run P95 (median)",
            measured=median([r["latency_ms"]["p95"] for r in runs]),
            limit=REFERENCE_MAX_P95_MS,
            unit="ms",
            higher_is_better=False,
            note=note + _invalid_note(runs),
            from_valid_runs=all_valid(runs),
        ),
    ]


def sustained_target(ours: list[dict[str, Any]], minimal: list[dict[str, Any]]) -> Target:
    a = median([r["throughput_rps"] for r in ours])
    b = median([r["throughput_rps"] for r in minimal])
    return Target(
        name="sustained_ratio",
        description="closed-loop throughput, peakshop / minimal app",
        measured=ratio(a, b),
        limit=SUSTAINED_MIN_RATIO,
        unit="x",
        higher_is_better=True,
        note=f"medians {a or 0:,.0f} / {b or 0:,.0f} req/s over {len(ours)} round(s)"
        + _invalid_note(ours + minimal),
        from_valid_runs=all_valid(ours + minimal),
    )


def open_target(ours: list[dict[str, Any]], minimal: list[dict[str, Any]]) -> Target:
    a = median([r["latency_ms"]["p99"] for r in ours])
    b = median([r["latency_ms"]["p99"] for r in minimal])
    return Target(
        name="open_loop_p99_ratio",
        description=f"open loop {ours[0]['rate']:,.0f}/s: P99 peakshop / minimal",
        measured=ratio(a, b),
        limit=OPEN_MAX_P99_RATIO,
        unit="x",
        higher_is_better=False,
        note=f"P99 {a or 0:.3f} ms / {b or 0:.3f} ms"
        + (f" (medians of {len(ours)} runs)" if len(ours) > 1 else "")
        + _invalid_note(ours + minimal),
        from_valid_runs=all_valid(ours + minimal),
    )


def run_suite(runner: Runner, *, peakshop: Server, minimal: Server, rounds: int) -> list[Target]:
    """Every target of the issue, in one session."""
    reference = [
        runner.measure(
            f"reference #{n}",
            peakshop,
            mode="closed",
            requests=REFERENCE_REQUESTS,
            concurrency=REFERENCE_CONCURRENCY,
        )
        for n in range(1, REFERENCE_RUNS + 1)
    ]
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for n in range(1, rounds + 1):
        for server, bucket in ((peakshop, ours), (minimal, theirs)):
            bucket.append(
                runner.measure(
                    f"sustained #{n}",
                    server,
                    mode="closed",
                    duration=SUSTAINED_DURATION,
                    concurrency=REFERENCE_CONCURRENCY,
                )
            )
    # One 20 s open-loop run's P99 rests on its slowest 200 requests, and on this machine the
    # minimal app's alone moved between 2.4 and 4.5 ms from one run to the next: the ratio is
    # taken from the medians of as many alternating rounds as the closed loop's.
    open_runs: dict[str, list[dict[str, Any]]] = {peakshop.name: [], minimal.name: []}
    for n in range(1, rounds + 1):
        for server in (peakshop, minimal):
            open_runs[server.name].append(
                runner.measure(
                    f"open loop #{n}",
                    server,
                    mode="open",
                    rate=OPEN_RATE,
                    duration=OPEN_DURATION,
                    concurrency=OPEN_CONNECTIONS,
                )
            )
    capacity = runner.measure(
        "bench capacity",
        minimal,
        mode="open",
        rate=BENCH_OPEN_RATE,
        duration=OPEN_DURATION,
        concurrency=OPEN_CONNECTIONS,
    )
    minimal_closed = median([r["throughput_rps"] for r in theirs])
    return [
        *reference_targets(reference, f"median of {REFERENCE_RUNS} runs of 1,000 requests"),
        sustained_target(ours, theirs),
        open_target(open_runs[peakshop.name], open_runs[minimal.name]),
        Target(
            name="bench_closed_rps",
            description="bench closed loop vs minimal app (median)",
            measured=minimal_closed,
            limit=BENCH_MIN_CLOSED_RPS,
            unit="req/s",
            higher_is_better=True,
            note=f"{runner.procs} sender process(es), {REFERENCE_CONCURRENCY} connections"
            + _invalid_note(theirs),
            from_valid_runs=all_valid(theirs),
        ),
        Target(
            name="bench_open_lag",
            description=f"bench open loop {BENCH_OPEN_RATE:,.0f}/s vs minimal: send lag P99",
            measured=capacity["lag_ms"]["p99"],
            limit=runner.max_lag_ms,
            unit="ms",
            higher_is_better=False,
            note=f"lag max {capacity['lag_ms']['max']:.3f} ms; "
            f"{capacity['failed']} failed of {capacity['total']:,}",
            # The lag decides validity by itself; failed requests make the run unusable.
            from_valid_runs=capacity["failed"] == 0,
        ),
    ]
