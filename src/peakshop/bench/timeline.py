"""The orchestrator's view of a profile run: the senders' raw records, aggregated.

- per phase (and per endpoint within it): counts by status and error kind, the latency of
  the served requests and the senders' lag (HdrHistograms, 3 significant digits);
- per second of the run: requests scheduled (``offered``) and actually sent in it, served
  answers completed in it (``throughput``), failures, and the latency and lag percentiles
  of the requests scheduled in it (HdrHistograms with 2 significant digits, turned into
  numbers once no more record can arrive for that second);
- per minute: the latency histogram of the requests scheduled in it (latency drift).

A request belongs to the phase and the second of its *scheduled* time, so a phase's
numbers are those of the load it offered, whenever the answers came back.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from peakshop.bench.driver import Record
from peakshop.bench.loadgen import HIST_HIGHEST_US, HIST_LOWEST_US
from peakshop.bench.profiles import Phase
from peakshop.bench.workload import Endpoint

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99_9", 99.9))
SERIES_PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))
NS_PER_S = 1_000_000_000


def histogram(digits: int = 3) -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, digits)


def record_ns(hist: HdrHistogram, value_ns: int) -> None:
    # Microseconds, rounded; the histogram holds neither 0 nor values past its top.
    hist.record_value(min(max((value_ns + 500) // 1000, 1), HIST_HIGHEST_US))


def ms(hist: HdrHistogram, percentile: float) -> float | None:
    if hist.get_total_count() == 0:
        return None
    return int(hist.get_value_at_percentile(percentile)) / 1000


def ok_code(endpoint: Endpoint, code: int | str) -> bool:
    return isinstance(code, int) and code in endpoint.ok_statuses


@dataclass
class Stats:
    """Counts and histograms of a set of requests (a phase, an endpoint in a phase)."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: HdrHistogram = field(default_factory=histogram)
    lag: HdrHistogram = field(default_factory=histogram)
    latency_sum_ns: int = 0
    latency_max_ns: int = 0
    lag_max_ns: int = 0
    early: int = 0
    with_lag: bool = True  # an endpoint's lag is its phase's: not kept twice

    def add(self, lag: int, latency: int, code: int | str, ok: bool) -> None:
        self.sent += 1
        if isinstance(code, int):
            self.statuses[code] += 1
        else:
            self.errors[code] += 1
        if ok:
            self.ok += 1
            record_ns(self.latency, latency)
            self.latency_sum_ns += latency
            self.latency_max_ns = max(self.latency_max_ns, latency)
        else:
            self.failed += 1
        if self.with_lag:
            if lag < 0:
                self.early += 1
            record_ns(self.lag, max(lag, 0))
            self.lag_max_ns = max(self.lag_max_ns, lag)

    def merge(self, other: Stats) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.failed += other.failed
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.latency.add(other.latency)
        self.lag.add(other.lag)
        self.latency_sum_ns += other.latency_sum_ns
        self.latency_max_ns = max(self.latency_max_ns, other.latency_max_ns)
        self.lag_max_ns = max(self.lag_max_ns, other.lag_max_ns)
        self.early += other.early

    def summary(self, seconds: float, *, with_histogram: bool = False) -> dict[str, Any]:
        latency: dict[str, float | None] = {name: ms(self.latency, p) for name, p in PERCENTILES}
        latency["mean"] = self.latency_sum_ns / self.ok / 1e6 if self.ok else None
        latency["max"] = self.latency_max_ns / 1e6 if self.ok else None
        summary: dict[str, Any] = {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "error_rate": self.failed / self.sent if self.sent else 0.0,
            "throughput_rps": self.ok / seconds if seconds > 0 else 0.0,
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": latency,
        }
        if self.with_lag:
            summary["lag_ms"] = {
                "p50": ms(self.lag, 50.0),
                "p99": ms(self.lag, 99.0),
                "max": self.lag_max_ns / 1e6 if self.sent else None,
            }
            summary["early_sends"] = self.early
        if with_histogram and self.ok:
            # The whole latency distribution (HdrHistogram's compressed encoding, base64):
            # runs can be merged or compared beyond the percentiles above.
            summary["latency_hdr"] = base64.b64encode(self.latency.encode()).decode()
        return summary


@dataclass
class _Second:
    offered: int = 0
    ok: int = 0
    failed: int = 0
    latency: HdrHistogram = field(default_factory=lambda: histogram(2))
    lag: HdrHistogram = field(default_factory=lambda: histogram(2))


class Timeline:
    """Aggregates records as they arrive; ``horizon_s``: a second is turned into numbers
    once the newest record is this much later (the request timeout plus a margin)."""

    def __init__(
        self, *, phases: Sequence[Phase], endpoints: Sequence[Endpoint], horizon_s: float
    ) -> None:
        self.phases = list(phases)
        self.endpoints = list(endpoints)
        self.horizon_ns = int(horizon_s * NS_PER_S)
        self.phase_stats = [Stats() for _ in phases]
        self.endpoint_stats = [[Stats(with_lag=False) for _ in endpoints] for _ in phases]
        self._open: dict[int, _Second] = {}
        self.closed: dict[int, dict[str, Any]] = {}
        self.dispatched: Counter[int] = Counter()  # by the second a request actually left
        self.completed_ok: Counter[int] = Counter()  # by the second its answer came in
        self.minutes: dict[int, HdrHistogram] = {}
        self.newest_ns = 0
        self.records = 0
        self.late_records = 0  # records for a second already turned into numbers
        self.dirty: set[int] = set()  # phases changed since the last look (live display)

    def add(self, records: Iterable[Record]) -> None:
        endpoints, phase_stats, endpoint_stats = (
            self.endpoints,
            self.phase_stats,
            self.endpoint_stats,
        )
        for offset, lag, latency, done, code, endpoint, phase in records:
            ok = ok_code(endpoints[endpoint], code)
            phase_stats[phase].add(lag, latency, code, ok)
            endpoint_stats[phase][endpoint].add(lag, latency, code, ok)
            self.dirty.add(phase)
            self.dispatched[(offset + lag) // NS_PER_S] += 1
            if ok:
                self.completed_ok[done // NS_PER_S] += 1
                minute = offset // (60 * NS_PER_S)
                if minute not in self.minutes:
                    self.minutes[minute] = histogram(2)
                record_ns(self.minutes[minute], latency)
            self._second(offset // NS_PER_S, lag, latency, ok)
            self.newest_ns = max(self.newest_ns, done)
            self.records += 1
        self._close(before_ns=self.newest_ns - self.horizon_ns)

    def _second(self, second: int, lag: int, latency: int, ok: bool) -> None:
        if second in self.closed:
            self.late_records += 1
            numbers = self.closed[second]
            numbers["offered"] += 1
            numbers["ok" if ok else "failed"] += 1
            return
        bucket = self._open.get(second)
        if bucket is None:
            bucket = self._open[second] = _Second()
        bucket.offered += 1
        record_ns(bucket.lag, max(lag, 0))
        if ok:
            bucket.ok += 1
            record_ns(bucket.latency, latency)
        else:
            bucket.failed += 1

    def _close(self, *, before_ns: int | None) -> None:
        for second in sorted(self._open):
            if before_ns is not None and (second + 1) * NS_PER_S > before_ns:
                break
            bucket = self._open.pop(second)
            numbers: dict[str, Any] = {
                "offered": bucket.offered,
                "ok": bucket.ok,
                "failed": bucket.failed,
                "lag_p99": ms(bucket.lag, 99.0),
            }
            numbers.update({name: ms(bucket.latency, p) for name, p in SERIES_PERCENTILES})
            numbers["max"] = (
                bucket.latency.get_max_value() / 1000 if bucket.latency.get_total_count() else None
            )
            self.closed[second] = numbers

    def finish(self) -> None:
        self._close(before_ns=None)

    def series(self, *, phase_starts_s: Sequence[float]) -> dict[str, list[Any]]:
        """Per-second arrays (index = second from the start), for the JSON and the charts."""
        seconds = max([*self.closed, *self.dispatched, *self.completed_ok, -1], default=-1) + 1
        empty: dict[str, Any] = {"offered": 0, "ok": 0, "failed": 0, "lag_p99": None, "max": None}
        empty.update(dict.fromkeys(name for name, _ in SERIES_PERCENTILES))
        rows = [self.closed.get(second, empty) for second in range(seconds)]
        out: dict[str, list[Any]] = {
            "t": list(range(seconds)),
            "phase": [_phase_at(phase_starts_s, s) for s in range(seconds)],
            "offered": [row["offered"] for row in rows],
            "sent": [self.dispatched.get(s, 0) for s in range(seconds)],
            "throughput": [self.completed_ok.get(s, 0) for s in range(seconds)],
            "errors": [row["failed"] for row in rows],
        }
        for name in (*(n for n, _ in SERIES_PERCENTILES), "max", "lag_p99"):
            out[name] = [row[name] for row in rows]
        return out

    def per_minute(self) -> list[dict[str, Any]]:
        return [
            {
                "minute": minute,
                "count": hist.get_total_count(),
                "p50_ms": ms(hist, 50.0),
                "p99_ms": ms(hist, 99.0),
            }
            for minute, hist in sorted(self.minutes.items())
        ]


def _phase_at(starts: Sequence[float], second: float) -> int:
    index = 0
    for number, start in enumerate(starts):
        if start <= second:
            index = number
    return index
