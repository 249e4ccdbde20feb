"""``peakshop bench run``: a load profile with a traffic mix against one server, open loop.

1. the profile (built-in or file), the SLO file, the server (spawned or attached);
2. the mix is drawn from the database (flash-sale-day also creates its sale through the
   admin API, to open at a fixed moment of the run);
3. the senders send; the live view shows each phase; a stress run stops at its first step
   that breaks the SLO;
4. the server's monitoring history and RSS are read, the verdict is made, the summary is
   printed, and the JSON (schema in ``results.py``) and HTML report are written.

Exit code: 0 when the run is valid and every check passed, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from peakshop.bench import html_report, live, mixes, report, results, server_metrics
from peakshop.bench import slo as slo_mod
from peakshop.bench.driver import DriverSpec
from peakshop.bench.orchestrate import Outcome
from peakshop.bench.orchestrate import run as orchestrate
from peakshop.bench.profiles import Profile, Schedule, resolve
from peakshop.bench.runner import _busy
from peakshop.bench.servers import RssSampler, Server, attach, spawn_peakshop
from peakshop.bench.timeline import Timeline
from peakshop.bench.workload import Workload, arrival_profile
from peakshop.config import Settings

STRESS_GRACE_S = 1.0  # a step is judged live this long after its end (answers in flight)


@dataclass(kw_only=True)
class RunOptions:
    profile: str
    mix: str
    url: str | None = None
    spawn: bool = False
    procs: int = 1
    connections: int = 256
    rate: float | None = None
    minutes: float | None = None
    stress_max: float | None = None
    think_time: float = 1.0
    sale_at: float | None = None
    sale_units: int = 500
    slo: Path | None = None
    json_path: Path | None = None
    html_path: Path | None = None
    max_lag_ms: float = 5.0
    timeout: float = 30.0
    seed: int = 42
    monitor_interval: float = 30.0

    def check(self) -> None:
        if self.spawn == (self.url is not None):
            raise ValueError("give exactly one of --url and --spawn")
        if self.procs < 1 or self.connections < self.procs:
            raise ValueError("--procs must be >= 1 and --connections >= --procs")
        if self.max_lag_ms <= 0 or self.timeout <= 0:
            raise ValueError("--max-lag-ms and --timeout must be positive")
        mixes.MixOptions(
            name=self.mix, think_time=self.think_time, sale_units=self.sale_units
        ).check()


@contextlib.contextmanager
def _server(options: RunOptions) -> Iterator[Server]:
    if options.spawn:
        with spawn_peakshop() as server:
            yield server
    else:
        yield attach("peakshop", options.url or "")


def build_workload(
    options: RunOptions, *, settings: Settings, server: Server, profile: Profile
) -> tuple[Workload, float | None]:
    """The mix, and the wall-clock time the run must start at (flash-sale-day) or None."""
    mix_options = mixes.MixOptions(
        name=options.mix,
        seed=options.seed,
        think_time=options.think_time,
        sale_at=options.sale_at,
        sale_units=options.sale_units,
    )
    if options.mix == "storefront":
        return mixes.storefront(settings, mix_options), None
    if options.mix == "validate":
        return mixes.validate(settings, mix_options), None
    start_wall = time.time() + mixes.SALE_LEAD_S
    workload = mixes.flash_sale_day(
        settings, mix_options, url=server.url, profile=profile, start_wall=start_wall
    )
    return workload, start_wall


def _stress_stopper(
    profile: Profile, timeline: Timeline, slo: slo_mod.Slo, *, max_lag_ms: float, pooled: bool
) -> Callable[[float], bool]:
    """Stop once a finished step breaks the SLO, judged on what has come back so far (the
    final verdict is made again on every answer). Records arrive with their answers, so
    the requests a step scheduled but that have no record yet are still unanswered (known
    exactly for pooled traffic; sessions make a step's request count approximate)."""
    p99, error_rate = slo.stress_limits()
    starts = Schedule(profile).phase_starts_s
    judged: set[int] = set()

    def should_stop(elapsed: float) -> bool:
        for index, phase in enumerate(profile.phases):
            if index in judged or elapsed < starts[index] + phase.duration + STRESS_GRACE_S:
                continue
            judged.add(index)
            stats = timeline.phase_stats[index]
            summary = stats.summary(phase.duration)
            outstanding = max(math.floor(phase.arrivals) - stats.sent, 0) if pooled else 0
            lag = summary["lag_ms"]["p99"]
            met, _ = slo_mod.step_verdict(
                {**summary, "valid": lag is None or lag <= max_lag_ms},
                p99_ms=p99,
                error_rate=error_rate,
                outstanding=outstanding,
            )
            if not met:
                return True
        return False

    return should_stop


def measure(
    options: RunOptions,
    *,
    console: Console,
    server: Server,
    profile: Profile,
    workload: Workload,
    slo: slo_mod.Slo | None,
    start_wall: float | None,
    admin_token: str,
) -> tuple[Outcome, dict[str, Any], dict[str, Any], list[tuple[float, int]]]:
    """Run the senders; returns the outcome, CPU shares, server metrics, RSS samples."""
    run_id = secrets.token_hex(4)
    spec = DriverSpec(
        base_url=server.url,
        workload=workload,
        profile=profile,
        seed=options.seed,
        run_id=run_id,
        connections=options.connections,
        timeout=options.timeout,
    )
    timeline = Timeline(
        phases=profile.phases, endpoints=workload.endpoints, horizon_s=options.timeout + 5
    )
    marks: dict[str, Any] = {}

    def started() -> None:
        server.mark_cpu()
        marks["before"], marks["own"] = psutil.cpu_times(), time.process_time()

    def finished() -> None:
        marks["server_cpu"] = server.cpu_since_mark() if server.spawned else None
        marks["after"], marks["own"] = psutil.cpu_times(), time.process_time() - marks["own"]

    should_stop = None
    if profile.kind == "stress":
        should_stop = _stress_stopper(
            profile,
            timeline,
            slo or slo_mod.Slo(),
            max_lag_ms=options.max_lag_ms,
            pooled=workload.sessions is None,
        )
    monitor = server_metrics.MonitorHistory(
        server.url, admin_token, interval=options.monitor_interval
    )
    with (
        monitor,
        RssSampler([server]) as rss,
        live.LiveView(console, profile, timeline, max_lag_ms=options.max_lag_ms) as view,
    ):
        outcome = orchestrate(
            spec,
            timeline,
            procs=options.procs,
            start_wall=start_wall,
            on_start=started,
            on_finish=finished,
            on_tick=view.tick,
            should_stop=should_stop,
        )
    seconds = outcome.duration_s
    busy = _busy(marks["after"]) - _busy(marks["before"])
    steal = getattr(marks["after"], "steal", 0.0) - getattr(marks["before"], "steal", 0.0)
    bench = outcome.sender_cpu_s + marks["own"]
    server_cpu = marks["server_cpu"]
    cpu = {
        "machine_busy": 100 * busy / seconds,
        "steal": 100 * steal / seconds,
        "server": None if server_cpu is None else 100 * server_cpu / seconds,
        "bench": 100 * bench / seconds,
        "other": None if server_cpu is None else 100 * (busy - server_cpu - bench) / seconds,
    }
    metrics = monitor.collect(start_wall=outcome.start_wall, end_wall=time.time())
    return outcome, cpu, metrics, rss.samples


def document(
    options: RunOptions,
    *,
    settings: Settings,
    server: Server,
    profile: Profile,
    workload: Workload,
    slo: slo_mod.Slo | None,
    outcome: Outcome,
    cpu: dict[str, Any],
    metrics: dict[str, Any],
    rss: list[tuple[float, int]],
    started_at: str,
    machine: dict[str, Any],
) -> dict[str, Any]:
    _, mean_actions = arrival_profile(workload, profile, seed=options.seed)
    timeline = outcome.timeline
    series = timeline.series(phase_starts_s=Schedule(profile).phase_starts_s)
    series["target_rate"] = results.target_rate(profile, len(series["t"]))
    phases = results.phases(
        outcome, profile, workload.endpoints, series, max_lag_ms=options.max_lag_ms
    )
    doc: dict[str, Any] = {
        "schema_version": results.SCHEMA_VERSION,
        "kind": results.KIND,
        "command": " ".join(["peakshop", *sys.argv[1:]]),
        "started_at": started_at,
        "finished_at": report.now_iso(),
        "duration_s": outcome.duration_s,
        "profile": profile.to_dict(),
        "mix": _mix(workload, mean_actions, outcome),
        "target": {
            "url": server.url,
            "spawned": server.spawned,
            "mode": settings.mode.value,
            "database": report.database_label(settings.database_url),
        },
        "machine": machine,
        "senders": {
            "procs": options.procs,
            "connections": options.connections,
            "max_lag_ms": options.max_lag_ms,
            "timeout_s": options.timeout,
            "cpu_s": outcome.sender_cpu_s,
            "seed": options.seed,
            "stopped_at_s": outcome.stopped_at_s,
            "late_records": timeline.late_records,
        },
        "cpu_pct": cpu,
        "phases": phases,
        "totals": None,
        "series": series,
        "minutes": timeline.per_minute(),
        "drift": server_metrics.latency_drift(timeline.per_minute()),
        "memory": server_metrics.memory_trend(
            rss=rss, monitor=metrics, start_wall=outcome.start_wall
        ),
        "server_metrics": metrics,
        "stress": None,
        "slo": None,
    }
    only = None
    if profile.kind == "stress":
        doc["stress"] = results.stress_verdict(phases, profile, slo or slo_mod.Slo())
        only = [step["name"] for step in doc["stress"]["steps"] if step["met"]]
    doc["totals"] = results.totals(outcome, phases, workload.endpoints, only=only)
    if slo is not None:
        checks = slo_mod.evaluate(slo, doc["totals"])
        doc["slo"] = {**slo.to_dict(), "checks": checks, "passed": all(c["passed"] for c in checks)}
    doc["verdict"] = results.verdict(doc)
    return doc


def _mix(workload: Workload, mean_actions: float, outcome: Outcome) -> dict[str, Any]:
    mix = workload.to_dict(mean_actions=mean_actions if workload.sessions else None)
    sale = mix["details"].get("sale")
    if sale is not None:  # when it opened in the run as it actually started
        opens = datetime.fromisoformat(sale["opens_at"]).timestamp()
        sale["opened_after_start_s"] = round(opens - outcome.start_wall, 3)
    return mix


def run(options: RunOptions, *, settings: Settings, console: Console) -> int:
    options.check()
    profile = resolve(
        options.profile, rate=options.rate, minutes=options.minutes, stress_max=options.stress_max
    )
    slo = slo_mod.load(options.slo) if options.slo is not None else None
    started_at, machine = report.now_iso(), report.machine_info()
    with _server(options) as server:
        with console.status(f"drawing the {options.mix} mix from the database"):
            workload, start_wall = build_workload(
                options, settings=settings, server=server, profile=profile
            )
        console.print(
            f"{profile.name} ({profile.description or f'{profile.duration:g} s'}) with the "
            f"{workload.name} mix against {server.url}, {options.procs} sender process(es)"
        )
        outcome, cpu, metrics, rss = measure(
            options,
            console=console,
            server=server,
            profile=profile,
            workload=workload,
            slo=slo,
            start_wall=start_wall,
            admin_token=settings.admin_token,
        )
        doc = document(
            options,
            settings=settings,
            server=server,
            profile=profile,
            workload=workload,
            slo=slo,
            outcome=outcome,
            cpu=cpu,
            metrics=metrics,
            rss=rss,
            started_at=started_at,
            machine=machine,
        )
    live.print_summary(console, doc)
    if options.json_path is not None:
        report.write_json(options.json_path, doc)
        console.print(f"wrote {options.json_path}")
    if options.html_path is not None:
        html_report.write(options.html_path, doc)
        console.print(f"wrote {options.html_path}")
    return int(doc["verdict"]["exit_code"])
