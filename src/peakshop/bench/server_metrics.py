"""The server's own view of a run, beside the client's: its monitoring history and RSS.

``GET /api/v1/monitoring/history?minutes=N`` (admin token) answers 1 s snapshots of each
server process: ``{pid, requests_per_second, error_rate, latency_ms{p50,p95,p99}, queue{...},
rss_bytes, event_loop_lag_ms, ...}`` with a timestamp. The history is pulled every
``interval`` seconds during the run (so a long run is not cut by the monitor's retention)
and once after it; snapshots are kept once per (pid, second) and aggregated per second over
the processes. A server without the endpoint (404), or that refuses the token, leaves the
report with "server metrics unavailable" and the reason; the run goes on.

The RSS of a server spawned by the bench is also sampled here with psutil (the whole
process tree), so an endurance run has its memory trend either way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

HISTORY_PATH = "/api/v1/monitoring/history"
TIME_KEYS = ("ts", "timestamp", "time", "t", "at", "captured_at")
LIST_KEYS = ("snapshots", "history", "items", "data", "samples")


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / (1000 if value > 1e12 else 1)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _snapshots(payload: Any) -> list[Mapping[str, Any]]:
    """The snapshots of an answer: a list, or a list under a usual key, or lists per pid."""
    if isinstance(payload, list):
        return [item for item in payload if isinstance(item, Mapping)]
    if isinstance(payload, Mapping):
        for key in LIST_KEYS:
            if isinstance(payload.get(key), list):
                return _snapshots(payload[key])
        found: list[Mapping[str, Any]] = []
        for key in ("processes", "by_pid"):
            if isinstance(payload.get(key), Mapping):
                for pid, items in payload[key].items():
                    found += [{"pid": pid, **item} for item in _snapshots(items)]
        return found
    return []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class MonitorHistory:
    """Polls the monitoring history in a thread; ``collect`` gives the run's part of it."""

    def __init__(self, url: str, token: str, *, interval: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.interval = interval
        self.snapshots: dict[tuple[Any, float], Mapping[str, Any]] = {}
        self.timeless: dict[tuple[Any, float], Mapping[str, Any]] = {}
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="monitor-history", daemon=True)
        self._started = time.time()

    def _fetch(self) -> None:
        minutes = max(math.ceil((time.time() - self._started) / 60) + 1, 1)
        try:
            response = httpx.get(
                f"{self.url}{HISTORY_PATH}",
                params={"minutes": minutes},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            self.error = f"{HISTORY_PATH}: {type(exc).__name__}: {exc}"
            return
        if response.status_code != 200:
            self.error = f"{HISTORY_PATH} answered {response.status_code}"
            return
        try:
            items = _snapshots(response.json())
        except ValueError:
            self.error = f"{HISTORY_PATH}: not JSON"
            return
        self.error = None
        now = time.time()
        self.timeless = {}
        for number, item in enumerate(items):
            # A snapshot may come wrapped as {at, data: {...}} (as the live messages are).
            data = item["data"] if isinstance(item.get("data"), Mapping) else item
            at = next(
                (_epoch(source[k]) for source in (item, data) for k in TIME_KEYS if k in source),
                None,
            )
            if at is None:  # no time given: one second apart, the last one now (only the
                # latest answer's are kept: their times move from one answer to the next)
                self.timeless[(data.get("pid"), now - (len(items) - 1 - number))] = data
            else:
                self.snapshots[(data.get("pid"), round(at, 3))] = data

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._fetch()

    def __enter__(self) -> MonitorHistory:
        self._started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def collect(self, *, start_wall: float, end_wall: float) -> dict[str, Any]:
        """The snapshots of [start, end] (+ 2 s: the last second's snapshot), aggregated
        per second over the server processes; ``available`` False with the reason if none."""
        self._fetch()
        inside = [
            (at - start_wall, item)
            for (_, at), item in sorted(
                {**self.snapshots, **self.timeless}.items(), key=lambda kv: kv[0][1]
            )
            if start_wall - 1 <= at <= end_wall + 2
        ]
        if not inside:
            reason = self.error or "the monitoring history holds no snapshot of the run"
            return {"available": False, "reason": reason, "series": None, "pids": []}
        return {
            "available": True,
            "reason": None,
            "pids": sorted({str(item.get("pid")) for _, item in inside}),
            "snapshots": len(inside),
            "series": aggregate(inside),
        }


def aggregate(inside: Sequence[tuple[float, Mapping[str, Any]]]) -> dict[str, list[Any]]:
    """Per second of the run: requests/s and RSS summed over processes, error rate weighted
    by requests, latency percentiles and event-loop lag as the worst process's."""
    seconds: dict[int, list[Mapping[str, Any]]] = {}
    for offset, item in inside:
        seconds.setdefault(math.floor(offset), []).append(item)
    out: dict[str, list[Any]] = {
        k: [] for k in ("t", "rps", "error_rate", "p50", "p95", "p99", "rss_bytes", "loop_lag_ms")
    }
    for second in sorted(seconds):
        items = seconds[second]
        rps = [_number(i.get("requests_per_second")) for i in items]
        total = sum(r for r in rps if r is not None)
        errors = [(_number(i.get("error_rate")), r) for i, r in zip(items, rps, strict=True)]
        weighted = [e * (r or 0) for e, r in errors if e is not None]
        out["t"].append(second)
        out["rps"].append(total if any(r is not None for r in rps) else None)
        out["error_rate"].append(sum(weighted) / total if total and weighted else None)
        for name in ("p50", "p95", "p99"):
            values = [
                _number(i.get("latency_ms", {}).get(name))
                for i in items
                if isinstance(i.get("latency_ms"), Mapping)
            ]
            out[name].append(max((v for v in values if v is not None), default=None))
        rss = [v for i in items if (v := _number(i.get("rss_bytes"))) is not None]
        out["rss_bytes"].append(sum(rss) if rss else None)
        lags = [v for i in items if (v := _number(i.get("event_loop_lag_ms"))) is not None]
        out["loop_lag_ms"].append(max(lags) if lags else None)
    return out


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None under 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 60


def memory_trend(
    *, rss: Sequence[tuple[float, int]], monitor: Mapping[str, Any], start_wall: float
) -> dict[str, Any] | None:
    """The server's RSS over the run: from psutil when the bench spawned it, else from the
    monitoring history; its slope (bytes per minute), start, end and peak."""
    points: list[tuple[float, float]] = [(at - start_wall, float(v)) for at, v in rss]
    source = "psutil"
    series = monitor.get("series") or {}
    if not points and series.get("rss_bytes"):
        points = [
            (float(t), float(v))
            for t, v in zip(series["t"], series["rss_bytes"], strict=True)
            if v is not None
        ]
        source = "monitoring history"
    if not points:
        return None
    values = [v for _, v in points]
    return {
        "source": source,
        "samples": [[round(t, 1), int(v)] for t, v in points],
        "start_bytes": int(values[0]),
        "end_bytes": int(values[-1]),
        "peak_bytes": int(max(values)),
        "slope_bytes_per_min": slope_per_minute(points),
    }


def latency_drift(minutes: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """P99 per minute and its least-squares slope (ms per minute). A last minute with under
    half the requests of a typical one (a partial minute) is left out."""
    full = [m for m in minutes if m["p99_ms"] is not None]
    if len(full) >= 2:
        typical = sorted(m["count"] for m in full)[len(full) // 2]
        if full[-1]["count"] < typical / 2:
            full = full[:-1]
    if len(full) < 2:
        return None
    points = [(m["minute"] * 60.0, float(m["p99_ms"])) for m in full]
    return {
        "p99_ms_per_minute": [[m["minute"], m["p99_ms"]] for m in full],
        "first_minute_p99_ms": full[0]["p99_ms"],
        "last_minute_p99_ms": full[-1]["p99_ms"],
        "p99_slope_ms_per_min": slope_per_minute(points)
        if len(points) >= 3
        else ((points[-1][1] - points[0][1]) / ((points[-1][0] - points[0][0]) / 60)),
    }
