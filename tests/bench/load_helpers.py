"""Run results built without a server: synthetic sender records through the real
aggregation (Timeline) and the real result document (``loadtest.document``)."""

from __future__ import annotations

from typing import Any

from peakshop.bench import loadtest, report
from peakshop.bench import slo as slo_mod
from peakshop.bench.driver import DriverSummary, Record
from peakshop.bench.orchestrate import Outcome
from peakshop.bench.profiles import Phase, Profile, Schedule
from peakshop.bench.servers import Server
from peakshop.bench.timeline import Timeline
from peakshop.bench.workload import Endpoint, Request, Workload
from tests.conftest import make_settings

PROFILE = Profile(
    name="synthetic",
    phases=(
        Phase(name="calm", duration=12, start_rate=100, end_rate=100),
        Phase(name="busy", duration=12, start_rate=200, end_rate=200),
    ),
)
ENDPOINTS = (
    Endpoint(name="validate", method="POST", route="/api/v1/coupons/validate"),
    Endpoint(
        name="order",
        method="POST",
        route="/api/v1/orders",
        ok_statuses=frozenset({202, 409}),
        idempotency_key=True,
    ),
)
WORKLOAD = Workload(
    name="synthetic",
    endpoints=ENDPOINTS,
    requests=(Request(0, "/api/v1/coupons/validate", b"{}"), Request(1, "/api/v1/orders", b"{}")),
    pool=(0, 1),
)


def records(
    profile: Profile = PROFILE, *, latency_ms: tuple[float, ...] = (2.0, 10.0), lag_us: int = 100
) -> list[Record]:
    """One record per scheduled request: even requests validate (200), odd ones order (202,
    every 10th a 409 sold out); every 50th a 500 and every 97th a timeout; latency per phase."""
    out: list[Record] = []
    for k, offset, phase in Schedule(profile).times():
        endpoint = k % 2
        code: int | str = (202 if k % 10 != 1 else 409) if endpoint else 200
        if k % 50 == 0:
            code = 500
        if k % 97 == 0:
            code = "timeout"
        latency = round(latency_ms[phase] * 1e6)
        out.append((offset, lag_us * 1000, latency, offset + latency, code, endpoint, phase))
    return out


def outcome(record_list: list[Record], profile: Profile = PROFILE, *, senders: int = 2) -> Outcome:
    timeline = Timeline(phases=profile.phases, endpoints=ENDPOINTS, horizon_s=35)
    for number in range(senders):
        timeline.add(record_list[number::senders])
    timeline.finish()
    planned = [0] * len(profile.phases)
    for record in record_list:
        planned[record[6]] += 1
    summaries = [DriverSummary(planned=[n // senders for n in planned]) for _ in range(senders)]
    for index, count in enumerate(planned):
        summaries[0].planned[index] += count - sum(s.planned[index] for s in summaries)
    return Outcome(
        timeline=timeline,
        senders=summaries,
        start_ns=0,
        start_wall=1_700_000_000.0,
        finished_ns=round(profile.duration * 1e9),
        stopped_at_s=None,
    )


def document(
    the_outcome: Outcome,
    profile: Profile = PROFILE,
    *,
    slo: slo_mod.Slo | None = None,
    max_lag_ms: float = 5.0,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    options = loadtest.RunOptions(
        profile="synthetic", mix="validate", url="http://127.0.0.1:1", max_lag_ms=max_lag_ms
    )
    return loadtest.document(
        options,
        settings=make_settings("sqlite+aiosqlite:///unused.db"),
        server=Server(name="peakshop", url="http://127.0.0.1:1"),
        profile=profile,
        workload=WORKLOAD,
        slo=slo,
        outcome=the_outcome,
        cpu={"machine_busy": 80.0, "steal": 0.0, "server": 50.0, "bench": 25.0, "other": 5.0},
        metrics=metrics
        or {"available": False, "reason": "answered 404", "series": None, "pids": []},
        rss=[(1_700_000_000.0 + t, 100_000_000 + t * 1_000_000) for t in range(25)],
        started_at=report.now_iso(),
        machine=report.machine_info(),
    )
