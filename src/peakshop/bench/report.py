"""Benchmark reports: run summaries, target verdicts, the machine, as tables and as JSON.

Every number printed or written comes from a measurement of this run; percentiles come from
HdrHistograms (3 significant digits), average/min/max from the raw timings.

CPU shares are approximate: per-process times are exact, but the machine-wide busy time is
sampled at each scheduler tick and undercounts short bursts, so "other" (machine minus
server minus bench) reads a few percent below zero on a quiet machine, and down to about
-15 % of a core for bursty open-loop runs. Only a clearly positive "other" means that
something else was running.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psutil
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from peakshop.bench.loadgen import LoadResult

if TYPE_CHECKING:
    from peakshop.config import Settings

PACKAGES = ("peakshop", "litestar", "granian", "msgspec", "sqlalchemy", "aiohttp", "hdrhistogram")
PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p99_9", 99.9))


@dataclass(kw_only=True)
class Target:
    name: str
    description: str
    measured: float | None
    limit: float
    unit: str
    higher_is_better: bool
    note: str = ""
    from_valid_runs: bool = True  # a figure from an invalid run never passes

    @property
    def passed(self) -> bool:
        if self.measured is None or not self.from_valid_runs:
            return False
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "measured": self.measured,
            "limit": self.limit,
            "comparison": ">=" if self.higher_is_better else "<=",
            "unit": self.unit,
            "passed": self.passed,
            "from_valid_runs": self.from_valid_runs,
            "note": self.note,
        }


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_total_bytes": memory.total,
        "memory_available_bytes": memory.available,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "source": source_info(),
    }


def source_info() -> dict[str, Any]:
    """The commit measured, and whether the working tree had changes (read-only git calls)."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "modified_files": None}
    return {"commit": commit, "modified_files": [line[3:] for line in status.splitlines()]}


def database_label(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _ms(histogram: HdrHistogram, percentile: float) -> float | None:
    if histogram.get_total_count() == 0:
        return None
    return int(histogram.get_value_at_percentile(percentile)) / 1000


def _ns_ms(value: int | None) -> float | None:
    return None if value is None else value / 1e6


def summarize(result: LoadResult, **meta: Any) -> dict[str, Any]:
    """One run as a flat dictionary: what the tables print and the JSON holds."""
    latency: dict[str, float | None] = {
        "avg": result.latency_sum_ns / result.responses / 1e6 if result.responses else None,
        "min": _ns_ms(result.latency_min_ns),
        "max": _ns_ms(result.latency_max_ns),
    }
    latency.update({name: _ms(result.latency, p) for name, p in PERCENTILES})
    summary: dict[str, Any] = {
        **meta,
        "mode": result.mode,
        "senders": result.senders,
        "total": result.sent,
        "succeeded": result.ok,
        "failed": result.failed,
        "non_2xx": {str(s): n for s, n in sorted(result.statuses.items()) if not 200 <= s < 300},
        "statuses": {str(s): n for s, n in sorted(result.statuses.items())},
        "errors": dict(sorted(result.errors.items())),
        "duration_s": result.duration_s,
        # Successful requests only; latencies too are those of the successes.
        "throughput_rps": result.ok / result.duration_s,
        "latency_ms": latency,
        "latency_from": "scheduled send" if result.mode == "open" else "actual send",
        "sender_cpu_s": result.cpu_seconds,
    }
    if result.mode == "open":
        summary["planned"] = result.planned
        summary["service_ms"] = {name: _ms(result.service, p) for name, p in PERCENTILES}
        summary["lag_ms"] = {
            "p50": _ms(result.lag, 50.0),
            "p99": _ms(result.lag, 99.0),
            "max": result.lag_max_ns / 1e6,
        }
        summary["early_sends"] = result.early
        summary["early_max_ms"] = result.early_max_ns / 1e6
    return summary


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _mode_label(run: dict[str, Any]) -> str:
    if run["mode"] == "open":
        label = f"open {run['rate']:,.0f}/s"
    else:
        label = f"closed c={run['concurrency']}"
    return label + (f" {run['senders']}p" if run["senders"] > 1 else "")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def throughput_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Throughput (CPU: % of one core; the machine has all its cores)", title_justify="left"
    )
    for column in ("run", "server", "mode"):
        table.add_column(column)
    columns = ("total", "ok", "failed", "secs", "req/s", "srv us/req")
    for column in (*columns, "cpu srv", "cpu bench", "cpu other"):
        table.add_column(column, justify="right")
    for run in runs:
        cpu = run.get("cpu_pct", {})
        table.add_row(
            run["name"],
            run["server"],
            _mode_label(run),
            f"{run['total']:,}",
            f"{run['succeeded']:,}",
            f"{run['failed']:,}",
            _fmt(run["duration_s"]),
            _fmt(run["throughput_rps"], 0),
            _fmt(run.get("server_cpu_us_per_request"), 0),
            _pct(cpu.get("server")),
            _pct(cpu.get("bench")),
            _pct(cpu.get("other")),
        )
    return table


def latency_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Latency, ms (open loop: from the scheduled send time)", title_justify="left"
    )
    table.add_column("run")
    table.add_column("server")
    for column in ("avg", "min", "p50", "p95", "p99", "p99.9", "max", "lag p99", "lag max"):
        table.add_column(column, justify="right")
    table.add_column("valid")
    for run in runs:
        lat = run["latency_ms"]
        lag = run.get("lag_ms") or {}
        table.add_row(
            run["name"],
            run["server"],
            *(_fmt(lat[key], 3) for key in ("avg", "min", "p50", "p95", "p99", "p99_9", "max")),
            _fmt(lag.get("p99"), 3),
            _fmt(lag.get("max"), 3),
            "yes" if run.get("valid", True) else "[red]NO[/red]",
        )
    return table


def failures_lines(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for run in runs:
        if run["failed"]:
            lines.append(
                f"{run['name']}: {run['failed']} failed; non-2xx {run['non_2xx'] or '{}'}, "
                f"errors {run['errors'] or '{}'}"
            )
        if not run.get("valid", True):
            lines.append(f"{run['name']}: INVALID: {run['invalid_reason']}")
    return lines


def targets_table(targets: list[Target]) -> Table:
    table = Table(title="Targets", title_justify="left")
    for column in ("target", "measured", "limit", "result", "note"):
        table.add_column(column, justify="right" if column in ("measured", "limit") else "left")
    for target in targets:
        op = ">=" if target.higher_is_better else "<="
        digits = 0 if target.unit in ("req/s", "MB") else 3
        table.add_row(
            target.description,
            f"{_fmt(target.measured, digits)} {target.unit}",
            f"{op} {target.limit:,} {target.unit}",
            "[green]pass[/green]" if target.passed else "[red]FAIL[/red]",
            target.note,
        )
    return table


def print_report(
    console: Console, *, runs: list[dict[str, Any]], targets: list[Target], extra: list[str]
) -> None:
    console.print(throughput_table(runs))
    console.print(latency_table(runs))
    for line in failures_lines(runs) + extra:
        console.print(line)
    if targets:
        console.print(targets_table(targets))


def scenario_document(
    scenario: str,
    *,
    started: str,
    machine: dict[str, Any],
    settings: Settings,
    options: Any,
    runs: list[dict[str, Any]],
    targets: list[Target],
    ok: bool,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON report of a ``peakshop bench`` scenario: what ran, where, and its verdicts;
    ``extra`` goes after the database."""
    return {
        "scenario": scenario,
        "command": " ".join(["peakshop", *sys.argv[1:]]),
        "started_at": started,
        "finished_at": now_iso(),
        "machine": machine,
        "mode": settings.mode.value,
        "database": database_label(settings.database_url),
        **extra,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "runs": runs,
        "targets": [t.to_dict() for t in targets],
        "all_passed": ok,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
