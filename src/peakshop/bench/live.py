"""What ``peakshop bench run`` prints: live progress per phase, then the summary tables.

Live: one row per phase (rate scheduled and sent, P50, P99, errors, sender lag P99),
refreshed twice a second from the orchestrator's Timeline (the senders' processes never
draw anything). Without a terminal (CI logs), one line per phase once it is over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from peakshop.bench.profiles import Profile, Schedule
from peakshop.bench.timeline import Timeline, ms


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


class LiveView:
    def __init__(
        self, console: Console, profile: Profile, timeline: Timeline, *, max_lag_ms: float
    ) -> None:
        self.console = console
        self.profile = profile
        self.schedule = Schedule(profile)
        self.timeline = timeline
        self.max_lag_ms = max_lag_ms
        self.interactive = console.is_terminal
        self.live = Live(console=console, refresh_per_second=2, transient=False)
        self._cache: dict[int, tuple[str, ...]] = {}
        self._printed: set[int] = set()
        self.elapsed = 0.0

    def __enter__(self) -> LiveView:
        if self.interactive:
            self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.interactive:
            self.live.update(self._table())
            self.live.stop()
        else:
            self._print_finished(everything=True)

    def _row(self, index: int) -> tuple[str, ...]:
        if index in self.timeline.dirty or index not in self._cache:
            stats = self.timeline.phase_stats[index]
            start = self.schedule.phase_starts_s[index]
            seconds = min(max(self.elapsed - start, 0.0), self.profile.phases[index].duration)
            lag = ms(stats.lag, 99.0)
            self._cache[index] = (
                _fmt(stats.sent / seconds if seconds > 0.5 else None, 0),
                f"{stats.ok:,}",
                _fmt(ms(stats.latency, 50.0), 2),
                _fmt(ms(stats.latency, 99.0), 2),
                f"{stats.failed:,}" if not stats.failed else f"[red]{stats.failed:,}[/red]",
                _fmt(lag, 2) if lag is None or lag <= self.max_lag_ms else f"[red]{lag:.2f}[/red]",
            )
            self.timeline.dirty.discard(index)
        return self._cache[index]

    def _state(self, index: int) -> str:
        start = self.schedule.phase_starts_s[index]
        if self.elapsed < start:
            return "[dim]waiting[/dim]"
        if self.elapsed < start + self.profile.phases[index].duration:
            return "[bold]running[/bold]"
        return "done"

    def _table(self) -> Table:
        table = Table(
            title=f"{self.profile.name}: {self.elapsed:,.0f} / {self.profile.duration:,.0f} s",
            title_justify="left",
        )
        for column in ("phase", "state", "rate"):
            table.add_column(column)
        for column in ("sent/s", "ok", "P50 ms", "P99 ms", "errors", "lag P99"):
            table.add_column(column, justify="right")
        for index, phase in enumerate(self.profile.phases):
            if self.elapsed < self.schedule.phase_starts_s[index] and len(self.profile.phases) > 12:
                continue  # a long stress profile: the steps to come would fill the screen
            rate = (
                f"{phase.start_rate:g}"
                if not phase.ramp
                else f"{phase.start_rate:g}→{phase.end_rate:g}"
            )
            table.add_row(phase.name, self._state(index), rate, *self._row(index))
        return table

    def tick(self, elapsed: float) -> None:
        self.elapsed = elapsed
        if self.interactive:
            self.live.update(self._table())
        else:
            self._print_finished(everything=False)

    def _print_finished(self, *, everything: bool) -> None:
        for index, phase in enumerate(self.profile.phases):
            end = self.schedule.phase_starts_s[index] + phase.duration
            if index in self._printed or (not everything and self.elapsed < end + 1):
                continue
            stats = self.timeline.phase_stats[index]
            if not stats.sent:
                continue
            self._printed.add(index)
            _, ok, p50, p99, failed, lag = self._row(index)
            self.console.print(
                f"phase {phase.name}: {stats.sent:,} sent, {ok} ok, P50 {p50} ms, "
                f"P99 {p99} ms, {failed} failed, lag P99 {lag} ms"
            )


def _phase_table(phases: Sequence[Mapping[str, Any]], totals: Mapping[str, Any]) -> Table:
    table = Table(title="Phases (latency from the scheduled send, ms)", title_justify="left")
    table.add_column("phase")
    for column in (
        "offered/s",
        "served/s",
        "sent",
        "failed",
        "P50",
        "P95",
        "P99",
        "max",
        "lag P99",
    ):
        table.add_column(column, justify="right")
    table.add_column("valid")
    rows = [p for p in phases if p["ran"]]
    for row in [*rows, {**totals, "name": "[bold]totals[/bold]", "valid": True}]:
        latency, lag = row["latency_ms"], row.get("lag_ms") or {}
        name = row["name"] + ("" if row.get("measured", True) else " [dim](not in totals)[/dim]")
        table.add_row(
            name,
            _fmt(row["offered_rps"], 0),
            _fmt(row["throughput_rps"], 0),
            f"{row['sent']:,}",
            f"{row['failed']:,}",
            *(_fmt(latency[k], 2) for k in ("p50", "p95", "p99", "max")),
            _fmt(lag.get("p99"), 2),
            "yes" if row["valid"] else "[red]NO[/red]",
        )
    return table


def _endpoint_table(totals: Mapping[str, Any]) -> Table:
    table = Table(title="Endpoints (measured phases)", title_justify="left")
    table.add_column("endpoint")
    for column in ("sent", "served/s", "errors", "P50", "P99", "statuses"):
        table.add_column(column, justify="right")
    for label, row in totals["endpoints"].items():
        table.add_row(
            label,
            f"{row['sent']:,}",
            _fmt(row["throughput_rps"], 1),
            f"{row['error_rate']:.2%}",
            _fmt(row["latency_ms"]["p50"], 2),
            _fmt(row["latency_ms"]["p99"], 2),
            " ".join(f"{k}:{v}" for k, v in {**row["statuses"], **row["errors"]}.items()),
        )
    return table


def print_summary(console: Console, document: Mapping[str, Any]) -> None:
    console.print(_phase_table(document["phases"], document["totals"]))
    if document["totals"]["endpoints"]:
        console.print(_endpoint_table(document["totals"]))
    stress = document.get("stress")
    if stress is not None:
        console.print(
            f"stress: knee {_fmt(stress['knee_rps'], 0)} req/s (P99 <= {stress['p99_ms']:g} ms, "
            f"errors <= {stress['error_rate']:.1%}); limited by {stress['limited_by']}"
            + (
                f"; breached at {stress['breached_at_rps']:g}/s: {stress['breach_reason']}"
                if stress["breached_at_rps"] is not None
                else ""
            )
        )
    if document.get("drift"):
        drift = document["drift"]
        console.print(
            f"latency drift: P99 {drift['first_minute_p99_ms']} → {drift['last_minute_p99_ms']} ms, "
            f"slope {_fmt(drift['p99_slope_ms_per_min'], 3)} ms/min"
        )
    if document.get("memory"):
        memory = document["memory"]
        console.print(
            f"server RSS ({memory['source']}): {memory['start_bytes'] / 1e6:,.1f} → "
            f"{memory['end_bytes'] / 1e6:,.1f} MB, peak {memory['peak_bytes'] / 1e6:,.1f} MB, "
            f"slope {_fmt((memory['slope_bytes_per_min'] or 0) / 1e6, 3)} MB/min"
        )
    if document.get("slo"):
        table = Table(title=f"SLO ({document['slo']['source']})", title_justify="left")
        for column in ("scope", "metric", "measured", "limit", "result", "note"):
            table.add_column(column)
        for check in document["slo"]["checks"]:
            table.add_row(
                check["scope"],
                check["metric"],
                _fmt(check["measured"], 4 if check["metric"] == "error_rate" else 2),
                f"{check['comparison']} {check['limit']:g}",
                "[green]pass[/green]" if check["passed"] else "[red]BREACH[/red]",
                check["note"],
            )
        console.print(table)
    verdict = document["verdict"]
    for line in verdict["invalid_reasons"]:
        console.print(f"[red]INVALID: {line}[/red]")
    for line in verdict["warnings"]:
        console.print(f"[yellow]{line}[/yellow]")
    console.print(
        "[green]passed[/green]" if verdict["passed"] else "[red]failed[/red]",
        f"(exit code {verdict['exit_code']})",
    )
