"""``peakshop bench compare A.json B.json``: what changed from run A to run B, beyond noise.

For the totals, each phase both runs have (by name) and each endpoint: throughput, P50,
P95, P99 (relative change, %) and the error rate (change in percentage points). A change
counts only when it exceeds the noise band:

- estimated from each run's per-second values in each phase of that scope (batch means:
  a phase's seconds are cut into ``BLOCKS`` consecutive blocks, whose means vary as much
  as the phase's own figure would from one run to the next, autocorrelation included; a
  scope of several phases takes its noisiest phase); the band is twice the combined
  standard error of the two runs (about 95%), and at least ``MIN_BAND_PCT``;
- a fixed ±``FIXED_BAND_PCT`` % (±``FIXED_BAND_PP`` points for the error rate) when a run
  has too few seconds or no per-second values for that scope (endpoints).

Per-second percentiles only approximate the noise of a whole run's percentile; the band
is a guide, not a test: compare runs from the same machine and mix, several of them when
the decision matters.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from peakshop.bench import html_report

BLOCKS = 5
MIN_SECONDS = 10
FIXED_BAND_PCT = 5.0
FIXED_BAND_PP = 0.1
MIN_BAND_PCT = 1.0
# metric -> (where in a summary, per-second series, higher is better)
METRICS: dict[str, tuple[tuple[str, ...], str | None, bool]] = {
    "throughput_rps": (("throughput_rps",), "throughput", True),
    "p50_ms": (("latency_ms", "p50"), "p50", False),
    "p95_ms": (("latency_ms", "p95"), "p95", False),
    "p99_ms": (("latency_ms", "p99"), "p99", False),
    "error_rate": (("error_rate",), None, False),
}


class CompareError(ValueError):
    """Not two run results of a schema this version reads."""


def load(path: Path) -> dict[str, Any]:
    doc = msgspec.json.decode(path.read_bytes())
    if not isinstance(doc, dict) or doc.get("kind") != "peakshop.bench.run":
        raise CompareError(f"{path}: not a `peakshop bench run` result")
    if doc.get("schema_version") != 1:
        raise CompareError(f"{path}: schema_version {doc.get('schema_version')}, this reads 1")
    return doc


def _get(summary: Mapping[str, Any], path: Sequence[str]) -> float | None:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return None if value is None else float(value)


def _seconds(doc: Mapping[str, Any], phases: Sequence[str]) -> list[int]:
    """The run's full seconds that lie inside the named phases."""
    out: list[int] = []
    for phase in doc["phases"]:
        if phase["name"] in phases and phase["ran"]:
            out += range(
                math.ceil(phase["start_s"]), math.floor(phase["start_s"] + phase["duration_s"])
            )
    return [s for s in out if s < len(doc["series"]["t"])]


def _values(doc: Mapping[str, Any], metric: str, seconds: Sequence[int]) -> list[float]:
    series = doc["series"]
    if metric == "error_rate":
        return [
            series["errors"][s] / series["offered"][s] * 100
            for s in seconds
            if series["offered"][s]
        ]
    name = METRICS[metric][1]
    return [float(v) for s in seconds if name is not None and (v := series[name][s]) is not None]


def relative_se(values: Sequence[float], *, absolute: bool = False) -> float | None:
    """Standard error of the mean by batch means, relative to the mean (or absolute)."""
    if len(values) < MIN_SECONDS:
        return None
    size = len(values) // BLOCKS
    means = [statistics.fmean(values[i * size : (i + 1) * size]) for i in range(BLOCKS)]
    se = statistics.stdev(means) / math.sqrt(BLOCKS)
    if absolute:
        return se
    mean = statistics.fmean(values)
    return se / abs(mean) if mean else None


def _band(
    doc_a: Mapping[str, Any],
    doc_b: Mapping[str, Any],
    metric: str,
    phases: Sequence[str] | None,
) -> tuple[float, str]:
    """The noise band of a metric. Phases differ by design (their load), so each phase's
    seconds are looked at apart, and a scope of several phases takes its noisiest one."""
    points = metric == "error_rate"
    fixed = (FIXED_BAND_PP if points else FIXED_BAND_PCT), "fixed"
    if not phases:
        return fixed
    errors = []
    for doc in (doc_a, doc_b):
        per_phase = [
            relative_se(_values(doc, metric, _seconds(doc, [phase])), absolute=points)
            for phase in phases
        ]
        known = [se for se in per_phase if se is not None]
        if not known:
            return fixed
        errors.append(max(known) if points else max(known) * 100)
    band = 2 * math.sqrt(sum(e * e for e in errors))
    return max(band, FIXED_BAND_PP / 10 if points else MIN_BAND_PCT), "per-second"


def _row(
    scope: str,
    metric: str,
    a: Mapping[str, Any] | None,
    b: Mapping[str, Any] | None,
    band: tuple[float, str],
) -> dict[str, Any]:
    path, _, higher = METRICS[metric]
    va = None if a is None else _get(a, path)
    vb = None if b is None else _get(b, path)
    row: dict[str, Any] = {
        "scope": scope,
        "metric": metric,
        "a": va,
        "b": vb,
        "band": band[0],
        "band_from": band[1],
    }
    if va is None or vb is None:
        return {**row, "change": None, "unit": None, "verdict": "not comparable"}
    if metric == "error_rate":
        change, unit = (vb - va) * 100, "pp"
    elif va == 0:
        return {
            **row,
            "change": None,
            "unit": "%",
            "verdict": "same" if vb == 0 else "not comparable",
        }
    else:
        change, unit = (vb - va) / abs(va) * 100, "%"
    verdict = "within noise"
    if abs(change) > band[0]:
        verdict = "better" if (change > 0) == higher else "worse"
    return {**row, "change": change, "unit": unit, "verdict": verdict}


def compare(doc_a: Mapping[str, Any], doc_b: Mapping[str, Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    total_phases = sorted(set(doc_a["totals"]["phases"]) & set(doc_b["totals"]["phases"]))
    for metric in METRICS:
        rows.append(
            _row(
                "totals",
                metric,
                doc_a["totals"],
                doc_b["totals"],
                _band(doc_a, doc_b, metric, total_phases),
            )
        )
    phases_b = {p["name"]: p for p in doc_b["phases"] if p["ran"]}
    for phase in doc_a["phases"]:
        other = phases_b.get(phase["name"])
        if phase["ran"] and other is not None and len(doc_a["phases"]) > 1:
            for metric in METRICS:
                rows.append(
                    _row(
                        f"phase {phase['name']}",
                        metric,
                        phase,
                        other,
                        _band(doc_a, doc_b, metric, [phase["name"]]),
                    )
                )
    endpoints_b = doc_b["totals"]["endpoints"]
    for label, summary in doc_a["totals"]["endpoints"].items():
        if label in endpoints_b and len(doc_a["totals"]["endpoints"]) > 1:
            for metric in METRICS:
                rows.append(
                    _row(
                        label,
                        metric,
                        summary,
                        endpoints_b[label],
                        _band(doc_a, doc_b, metric, None),
                    )
                )
    notes = []
    for key in ("cpu_model", "logical_cores", "python"):
        if doc_a["machine"].get(key) != doc_b["machine"].get(key):
            notes.append(
                f"machines differ: {key} {doc_a['machine'].get(key)} vs {doc_b['machine'].get(key)}"
            )
    for what in ("profile", "mix"):
        if doc_a[what]["name"] != doc_b[what]["name"]:
            notes.append(f"different {what}s: {doc_a[what]['name']} vs {doc_b[what]['name']}")
    for label, doc in (("A", doc_a), ("B", doc_b)):
        if not doc["verdict"]["valid"]:
            notes.append(f"run {label} is INVALID: {'; '.join(doc['verdict']['invalid_reasons'])}")
    return {"rows": rows, "notes": notes, "regressions": sum(r["verdict"] == "worse" for r in rows)}


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3%}" if metric == "error_rate" else f"{value:,.2f}"


def _change(row: Mapping[str, Any]) -> str:
    if row["change"] is None:
        return "-"
    return f"{row['change']:+.2f} {row['unit']} (±{row['band']:.2f})"


def print_comparison(console: Console, result: Mapping[str, Any], *, a: str, b: str) -> None:
    table = Table(title=f"A = {a}\nB = {b}", title_justify="left")
    for column in ("scope", "metric", "A", "B", "change (noise band)", "verdict"):
        table.add_column(column, justify="right" if column in ("A", "B") else "left")
    styles = {"better": "[green]better[/green]", "worse": "[red]WORSE[/red]"}
    for row in result["rows"]:
        table.add_row(
            row["scope"],
            row["metric"],
            _fmt(row["a"], row["metric"]),
            _fmt(row["b"], row["metric"]),
            _change(row),
            styles.get(row["verdict"], row["verdict"]),
        )
    console.print(table)
    for note in result["notes"]:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"{result['regressions']} change(s) worse beyond the noise band")


def render_html(
    result: Mapping[str, Any], doc_a: Mapping[str, Any], doc_b: Mapping[str, Any], *, a: str, b: str
) -> str:
    colors = {"better": "pass", "worse": "fail"}
    rows = "".join(
        f"<tr><td>{html_report.escape(r['scope'])}</td><td>{r['metric']}</td><td class=n>{_fmt(r['a'], r['metric'])}</td>"
        f"<td class=n>{_fmt(r['b'], r['metric'])}</td><td class=n>{html_report.escape(_change(r))}</td>"
        f"<td class={colors.get(r['verdict'], 'muted')}>{r['verdict']}</td></tr>"
        for r in result["rows"]
    )
    notes = "".join(f"<p class=warn>{html_report.escape(n)}</p>" for n in result["notes"])
    sa, sb = doc_a["series"], doc_b["series"]
    length = max(len(sa["t"]), len(sb["t"]))
    t = list(range(length))

    def pad(values: Sequence[Any]) -> list[Any]:
        return [*values, *([None] * (length - len(values)))]

    charts = [
        html_report.chart_spec("cmp-throughput", "Served per second", "req/s", t, [("A", pad(sa["throughput"]), "mean"), ("B", pad(sb["throughput"]), "mean")]),
        html_report.chart_spec("cmp-p99", "P99 per second", "ms", t, [("A", pad(sa["p99"]), "max"), ("B", pad(sb["p99"]), "max")]),
    ]  # fmt: skip
    body = (
        f"<p>A = <code>{html_report.escape(a)}</code> ({html_report.escape(doc_a['started_at'])})<br>"
        f"B = <code>{html_report.escape(b)}</code> ({html_report.escape(doc_b['started_at'])})</p>{notes}"
        "<table><tr><th>scope</th><th>metric</th><th>A</th><th>B</th><th>change (noise band)</th><th>verdict</th></tr>"
        f"{rows}</table><p>{result['regressions']} change(s) worse beyond the noise band</p>"
        + "".join(f"<div class=chart id='chart-{c['id']}'></div>" for c in charts)
    )
    return html_report.page(
        title="peakshop bench compare",
        subtitle=f"{a} → {b}",
        body=body,
        data={"charts": charts, "phases": []},
    )
