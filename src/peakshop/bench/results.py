"""The JSON result of ``peakshop bench run`` (``schema_version`` 1) and its verdict.

Top-level keys (times in seconds from the run's start unless named ``*_at``; latencies in
ms; rates in requests per second; ``null`` where nothing was measured):

- ``schema_version`` (1), ``kind`` ("peakshop.bench.run"), ``command``, ``started_at``,
  ``finished_at`` (ISO 8601 UTC), ``duration_s`` (first scheduled send to last answer);
- ``profile``: ``name``, ``kind`` ("fixed" | "stress"), ``source`` ("builtin" or the file),
  ``description``, ``duration_s``, ``phases`` [{name, start_s, duration_s, start_rate,
  end_rate, measured}];
- ``mix``: ``name``, ``endpoints`` [{name, label "METHOD /route", method, route,
  ok_statuses, idempotency_key}], ``sessions`` (null for pooled traffic, else
  {think_time_mean_s, mean_actions, params, pools}), ``details`` (what it was drawn from);
- ``target``: ``url``, ``spawned``, ``mode`` ("embedded" | "scaled"), ``database``;
- ``machine``: cores, memory, CPU model, OS, Python, package versions, commit (as every
  bench JSON); ``senders``: {procs, connections, max_lag_ms, timeout_s, cpu_s, seed};
  ``cpu_pct``: {machine_busy, steal, server, bench, other} in % of one core over the run
  ("other" is what else ran on the machine: a clearly positive value means a disturbed run);
- ``phases`` [{name, start_s, duration_s (as run: a stopped run cuts it), ran, measured,
  planned, offered_rps, sent, ok, failed, error_rate, throughput_rps (served requests of
  the phase per second of it), statuses {code: n}, errors {kind: n}, latency_ms {p50, p90,
  p95, p99, p99_9, mean, max}, lag_ms {p50, p99, max}, early_sends, send_accuracy
  {mean_abs_pct, max_abs_pct}: per full second, requests actually sent vs scheduled,
  valid, invalid_reason, endpoints {label: {name, sent, ok, failed, error_rate,
  throughput_rps, statuses, errors, latency_ms}}, latency_hdr (base64 HdrHistogram)}];
- ``totals``: the same shape as a phase over the measured phases whose senders kept up
  (warm-ups and invalid phases left out; a stress run: the steps that met the SLO), with
  ``phases`` (their names) and ``endpoints``;
- ``series`` (per second, arrays of equal length): ``t``, ``phase`` (index), ``target_rate``
  (the profile's rate), ``offered`` (requests scheduled in the second), ``sent`` (actually
  sent in it), ``throughput`` (served answers that came in during it), ``errors``
  (failures among the requests scheduled in it), ``p50``/``p95``/``p99``/``max`` (latency of
  those served), ``lag_p99``;
- ``minutes`` [{minute, count, p50_ms, p99_ms}]; ``drift`` (null under 2 full minutes):
  {p99_ms_per_minute [[minute, p99]], first_minute_p99_ms, last_minute_p99_ms,
  p99_slope_ms_per_min};
- ``memory`` (null without a spawned server or monitoring): {source ("psutil" |
  "monitoring history"), samples [[t, bytes]], start_bytes, end_bytes, peak_bytes,
  slope_bytes_per_min};
- ``server_metrics``: {available, reason (why not), pids, snapshots, series {t, rps,
  error_rate, p50, p95, p99, rss_bytes, loop_lag_ms}} from ``/api/v1/monitoring/history``;
- ``stress`` (stress profile only): {knee_rps (highest step rate that met the SLO, null if
  none), breached_at_rps, breach_reason, limited_by ("server" | "sender" | "profile": all
  steps met), p99_ms, error_rate (the limits), steps [{name, rate, met, reason}]};
- ``slo``: null, or {source, run, endpoints, checks [{scope, metric, limit, comparison,
  measured, passed, note}], passed};
- ``verdict``: {valid, invalid_reasons [...], warnings [...], slo_passed, passed,
  exit_code (0: valid and every check passed; 1 otherwise)}.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from peakshop.bench import slo as slo_mod
from peakshop.bench.orchestrate import Outcome
from peakshop.bench.profiles import Profile, Schedule
from peakshop.bench.timeline import Stats
from peakshop.bench.workload import Endpoint

SCHEMA_VERSION = 1
KIND = "peakshop.bench.run"
BUSY_OTHER_PCT = 25.0


def _accuracy(
    series: Mapping[str, list[Any]], start_s: float, end_s: float
) -> dict[str, float | None]:
    """Per full second of the phase: requests actually sent vs scheduled, in %."""
    errors = []
    first, last = int(start_s) + 1, int(end_s) - 1  # edge seconds are shared with neighbours
    for second in range(first, min(last, len(series["t"]))):
        offered = series["offered"][second]
        if offered:
            errors.append(abs(series["sent"][second] - offered) / offered * 100)
    if not errors:
        return {"mean_abs_pct": None, "max_abs_pct": None}
    return {"mean_abs_pct": sum(errors) / len(errors), "max_abs_pct": max(errors)}


def _endpoints(
    stats: Sequence[Stats], endpoints: Sequence[Endpoint], seconds: float
) -> dict[str, Any]:
    out = {}
    for endpoint, stat in zip(endpoints, stats, strict=True):
        if stat.sent:
            out[endpoint.label] = {"name": endpoint.name, **stat.summary(seconds)}
    return out


def phases(
    outcome: Outcome,
    profile: Profile,
    endpoints: Sequence[Endpoint],
    series: Mapping[str, list[Any]],
    *,
    max_lag_ms: float,
) -> list[dict[str, Any]]:
    schedule = Schedule(profile)
    planned = outcome.planned_per_phase()
    timeline = outcome.timeline
    stop = outcome.stopped_at_s
    out = []
    for index, phase in enumerate(profile.phases):
        start = schedule.phase_starts_s[index]
        end = start + phase.duration if stop is None else min(start + phase.duration, stop)
        seconds = max(end - start, 0.0)
        stats = timeline.phase_stats[index]
        summary = stats.summary(seconds, with_histogram=True)
        lag_p99 = summary["lag_ms"]["p99"]
        invalid = None
        if lag_p99 is not None and lag_p99 > max_lag_ms:
            invalid = (
                f"sender lag P99 {lag_p99:.3f} ms > {max_lag_ms:g} ms: the senders fell behind, "
                "so these latencies include their own delay (not reported as the server's)"
            )
        out.append(
            {
                "name": phase.name,
                "start_s": start,
                "duration_s": seconds,
                "ran": seconds > 0 and stats.sent > 0,
                "measured": phase.measured,
                "planned": planned[index],
                "offered_rps": planned[index] / seconds if seconds else 0.0,
                **summary,
                "send_accuracy": _accuracy(series, start, end),
                "valid": invalid is None,
                "invalid_reason": invalid,
                "endpoints": _endpoints(timeline.endpoint_stats[index], endpoints, seconds),
            }
        )
    return out


def totals(
    outcome: Outcome,
    summaries: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Endpoint],
    *,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The measured, valid phases together (of ``only`` those phases, when given: a stress
    run's steps up to its knee)."""
    chosen = [
        n
        for n, p in enumerate(summaries)
        if p["measured"] and p["valid"] and p["ran"] and (only is None or p["name"] in only)
    ]
    merged = Stats()
    per_endpoint = [Stats(with_lag=False) for _ in endpoints]
    for index in chosen:
        merged.merge(outcome.timeline.phase_stats[index])
        for number, stat in enumerate(outcome.timeline.endpoint_stats[index]):
            per_endpoint[number].merge(stat)
    seconds = sum(summaries[n]["duration_s"] for n in chosen)
    planned = sum(summaries[n]["planned"] for n in chosen)
    return {
        "phases": [summaries[n]["name"] for n in chosen],
        "duration_s": seconds,
        "planned": planned,
        "offered_rps": planned / seconds if seconds else 0.0,
        **merged.summary(seconds, with_histogram=True),
        "endpoints": _endpoints(per_endpoint, endpoints, seconds),
    }


def target_rate(profile: Profile, seconds: int) -> list[float]:
    """The profile's request rate averaged over each second: N(s + 1) - N(s)."""
    schedule = Schedule(profile)
    return [
        round(schedule.arrivals_until(s + 1) - schedule.arrivals_until(s), 3)
        for s in range(seconds)
    ]


def stress_verdict(
    summaries: Sequence[Mapping[str, Any]], profile: Profile, slo: slo_mod.Slo
) -> dict[str, Any]:
    p99, error_rate = slo.stress_limits()
    steps: list[dict[str, Any]] = []
    knee = breached = None
    reason = ""
    limited_by = "profile"
    for phase, summary in zip(profile.phases, summaries, strict=True):
        if not summary["ran"]:
            break
        met, why = slo_mod.step_verdict(summary, p99_ms=p99, error_rate=error_rate)
        steps.append(
            {"name": phase.name, "rate": phase.end_rate, "met": met, "reason": why or None}
        )
        if not met:
            breached, reason = phase.end_rate, why
            limited_by = "server" if summary["valid"] else "sender"
            break
        knee = phase.end_rate
    if breached is None and summaries and not summaries[-1]["ran"]:
        limited_by = "stopped"
    return {
        "knee_rps": knee,
        "breached_at_rps": breached,
        "breach_reason": reason or None,
        "limited_by": limited_by,
        "p99_ms": p99,
        "error_rate": error_rate,
        "steps": steps,
    }


def verdict(document: Mapping[str, Any]) -> dict[str, Any]:
    """Valid (the senders kept up in every measured phase, something was served) and the
    checks passed (SLO, the stress knee): exit code 0; else 1."""
    reasons: list[str] = []
    warnings: list[str] = []
    stress = document.get("stress")
    for phase in document["phases"]:
        if phase["ran"] and phase["measured"] and not phase["valid"] and stress is None:
            reasons.append(f"phase {phase['name']}: {phase['invalid_reason']}")
    if stress is not None and stress["limited_by"] == "sender":
        warnings.append(
            "stress: the senders fell behind before the server broke the SLO: the knee is a "
            "lower bound (more --procs, or a quieter machine)"
        )
    if stress is not None and stress["knee_rps"] is None:
        reasons.append(
            "stress: no step met the SLO"
            + (f" ({stress['breach_reason']})" if stress["breach_reason"] else "")
        )
    if stress is None and not document["totals"]["sent"]:
        reasons.append("no measured phase with valid senders: nothing to report")
    other = (document.get("cpu_pct") or {}).get("other")
    if other is not None and other > BUSY_OTHER_PCT:
        warnings.append(
            f"other processes used {other:.0f}% of a core during the run: "
            "these numbers are not this machine at rest"
        )
    if not document["server_metrics"]["available"]:
        warnings.append(f"server metrics unavailable: {document['server_metrics']['reason']}")
    for phase in document["phases"]:
        if phase["ran"] and phase["errors"]:
            warnings.append(f"phase {phase['name']}: client errors {phase['errors']}")
    slo = document.get("slo")
    slo_passed = None if slo is None else bool(slo["passed"])
    passed = not reasons and slo_passed is not False
    return {
        "valid": not reasons,
        "invalid_reasons": reasons,
        "warnings": warnings,
        "slo_passed": slo_passed,
        "passed": passed,
        "exit_code": 0 if passed else 1,
    }


def decode_histogram(encoded: str) -> Any:
    """A ``latency_hdr`` field back into an HdrHistogram (microseconds)."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram.decode(base64.b64decode(encoded))
