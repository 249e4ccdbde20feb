"""Service-level objectives of a load test, from a TOML file, and their verdict.

    # slo.toml: every key is optional; a breach makes `peakshop bench run` exit with 1
    [run]                          # all requests of the measured phases together
    p99_ms = 100
    error_rate = 0.01              # failed / sent (a failure: an unexpected status or an error)
    min_throughput_rps = 50        # served requests per second

    [endpoints."GET /api/v1/products"]     # "METHOD /route" as the report lists them,
    p99_ms = 50                            # or the endpoint's short name ("browse")
    [endpoints."POST /api/v1/orders"]
    p99_ms = 200
    error_rate = 0.001

Thresholds: ``p50_ms``, ``p95_ms``, ``p99_ms``, ``error_rate``, ``min_throughput_rps``. They
are checked against the totals of the run's measured phases whose senders kept up; an
endpoint named in the file that the run did not exercise is a breach (a typo must not
pass). The stress profile finds its knee with ``[run]``'s ``p99_ms`` and ``error_rate``
(default 100 ms and 1%).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

THRESHOLDS = ("p50_ms", "p95_ms", "p99_ms", "error_rate", "min_throughput_rps")
DEFAULT_STRESS_P99_MS = 100.0
DEFAULT_STRESS_ERROR_RATE = 0.01


class SloError(ValueError):
    """A malformed SLO file."""


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None
    min_throughput_rps: float | None = None

    def items(self) -> list[tuple[str, float]]:
        return [(name, value) for name in THRESHOLDS if (value := getattr(self, name)) is not None]


@dataclass(frozen=True, kw_only=True)
class Slo:
    run: Thresholds = field(default_factory=Thresholds)
    endpoints: Mapping[str, Thresholds] = field(default_factory=dict)
    source: str | None = None

    def stress_limits(self) -> tuple[float, float]:
        """(P99 ms, error rate) that a stress step must meet."""
        p99 = self.run.p99_ms if self.run.p99_ms is not None else DEFAULT_STRESS_P99_MS
        errors = self.run.error_rate
        return p99, errors if errors is not None else DEFAULT_STRESS_ERROR_RATE

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "run": dict(self.run.items()),
            "endpoints": {name: dict(t.items()) for name, t in self.endpoints.items()},
        }


def load(path: Path) -> Slo:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SloError(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - {"run", "endpoints"})
    if unknown:
        raise SloError(f"{path}: unknown section(s) {', '.join(unknown)} (known: run, endpoints)")
    endpoints = data.get("endpoints", {})
    if not isinstance(endpoints, Mapping):
        raise SloError(f"{path}: [endpoints] must be a table of tables")
    return Slo(
        run=_thresholds(data.get("run", {}), "[run]"),
        endpoints={name: _thresholds(v, f"[endpoints.{name!r}]") for name, v in endpoints.items()},
        source=str(path),
    )


def _thresholds(raw: Any, where: str) -> Thresholds:
    if not isinstance(raw, Mapping):
        raise SloError(f"{where} must be a table")
    unknown = sorted(set(raw) - set(THRESHOLDS))
    if unknown:
        raise SloError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(THRESHOLDS)})"
        )
    values: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SloError(f"{where}.{name}: expected a non-negative number")
        values[name] = float(value)
    if "error_rate" in values and values["error_rate"] > 1:
        raise SloError(f"{where}.error_rate is a fraction (0.01 for 1%)")
    return Thresholds(**values)


def _measured(summary: Mapping[str, Any], metric: str) -> float | None:
    if metric.endswith("_ms"):
        value = summary["latency_ms"].get(metric.removesuffix("_ms"))
    elif metric == "min_throughput_rps":
        value = summary["throughput_rps"]
    else:
        value = summary[metric]
    return None if value is None else float(value)


def _check(
    scope: str, metric: str, limit: float, summary: Mapping[str, Any] | None
) -> dict[str, Any]:
    higher = metric == "min_throughput_rps"
    measured = None if summary is None or not summary.get("sent") else _measured(summary, metric)
    passed = measured is not None and (measured >= limit if higher else measured <= limit)
    note = ""
    if summary is None or not summary.get("sent"):
        note = "no request measured for this scope"
    elif measured is None:
        note = "no request was served"
    return {
        "scope": scope,
        "metric": metric,
        "limit": limit,
        "comparison": ">=" if higher else "<=",
        "measured": measured,
        "passed": passed,
        "note": note,
    }


def evaluate(slo: Slo, totals: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every threshold of ``slo`` against the run's totals (``totals["endpoints"]`` by label;
    each endpoint summary also carries its short ``name``)."""
    checks = [_check("run", metric, limit, totals) for metric, limit in slo.run.items()]
    endpoints = totals.get("endpoints", {})
    by_name = {summary.get("name"): label for label, summary in endpoints.items()}
    for scope, thresholds in slo.endpoints.items():
        label = scope if scope in endpoints else by_name.get(scope)
        summary = endpoints.get(label) if label is not None else None
        for metric, limit in thresholds.items():
            checks.append(_check(label or scope, metric, limit, summary))
    return checks


def step_verdict(
    summary: Mapping[str, Any], *, p99_ms: float, error_rate: float, outstanding: int = 0
) -> tuple[bool, str]:
    """Whether a stress step met the SLO; ``outstanding`` requests of the step had no
    answer yet (they count as slower than any answer, and as failed past 1%)."""
    sent = summary["sent"]
    if not sent:
        return False, "nothing was sent"
    if not summary.get("valid", True):
        return False, "the senders fell behind (the step measured the sender)"
    if outstanding > sent * (1 - 0.99):
        return False, f"{outstanding} of {sent} requests still unanswered"
    failed = summary["failed"] / sent
    if failed > error_rate:
        return False, f"error rate {failed:.2%} > {error_rate:.2%}"
    p99 = summary["latency_ms"]["p99"]
    if p99 is None or p99 > p99_ms:
        return False, f"P99 {p99} ms > {p99_ms:g} ms"
    return True, ""
