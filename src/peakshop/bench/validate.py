"""The validate scenario: ``POST /api/v1/coupons/validate`` under load, against the targets
of the coupon-validation issue.

One run (closed loop by default, open loop with a rate), optionally repeated against the
minimal app of ``benchmarks/`` in the same session, or ``--suite``: every target measured
end to end. Comparisons are ratios of runs made in the same session, alternating between
the two servers, so that what else happened on the machine meanwhile hits both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from peakshop.bench import mix, report
from peakshop.bench.loadgen import Mode
from peakshop.bench.report import Target
from peakshop.bench.runner import VALIDATE_PATH, Runner
from peakshop.bench.servers import Server, attach, spawn_minimal, spawn_peakshop
from peakshop.bench.validate_targets import (
    OPEN_CONNECTIONS,
    OPEN_DURATION,
    REFERENCE_CONCURRENCY,
    REFERENCE_REQUESTS,
    REFERENCE_RUNS,
    open_target,
    reference_targets,
    rss_target,
    run_suite,
    sustained_target,
)
from peakshop.config import Settings

# A run during which other processes used more than this much CPU is flagged as disturbed.
BUSY_OTHER_PCT = 25
# The suite's runs are long and compared with each other: each waits for an idle machine.
SUITE_WAIT_QUIET = 120.0


@dataclass(kw_only=True)
class ValidateOptions:
    url: str | None = None
    spawn: bool = False
    requests: int | None = None
    concurrency: int | None = None
    rate: float | None = None
    duration: float | None = None
    procs: int = 1
    json_path: Path | None = None
    token: str | None = None
    compare_minimal: bool = False
    minimal_url: str | None = None
    minimal_app: Path = Path("benchmarks/minimal_app.py")
    suite: bool = False
    rounds: int | None = None
    mix: str | None = None
    pool: int = 20_000
    seed: int = 42
    max_lag_ms: float = 5.0
    warmup: int = 2_000
    timeout: float = 30.0
    wait_quiet: float | None = None  # None: SUITE_WAIT_QUIET with --suite, else 0

    def check(self) -> None:
        if self.spawn == (self.url is not None):
            raise ValueError("give exactly one of --url and --spawn")
        if self.suite and (self.requests or self.rate or self.duration or self.concurrency):
            raise ValueError("--suite runs the issue's own shapes: drop --requests/--rate/...")
        if self.rate is not None and self.requests is not None:
            raise ValueError("open loop (--rate) runs for --duration, not --requests")
        if self.procs < 1 or self.pool < 1 or (self.rounds is not None and self.rounds < 1):
            raise ValueError("--procs, --pool and --rounds must be positive")
        wants_minimal = self.suite or self.compare_minimal
        if wants_minimal and not self.spawn and self.minimal_url is None:
            raise ValueError("comparing with the minimal app needs --spawn or --minimal-url")


@dataclass(frozen=True, kw_only=True)
class Shape:
    mode: Mode
    concurrency: int
    requests: int | None = None
    duration: float | None = None
    rate: float | None = None

    def measure(self, runner: Runner, name: str, server: Server) -> dict[str, Any]:
        return runner.measure(
            name,
            server,
            mode=self.mode,
            concurrency=self.concurrency,
            requests=self.requests,
            duration=self.duration,
            rate=self.rate,
        )


def single_shape(options: ValidateOptions) -> Shape:
    """The shape of a single (non-suite) run; by default the issue's reference run."""
    if options.rate is not None:
        return Shape(
            mode="open",
            rate=options.rate,
            duration=options.duration or OPEN_DURATION,
            concurrency=options.concurrency or OPEN_CONNECTIONS,
        )
    requests = options.requests
    if requests is None and options.duration is None:
        requests = REFERENCE_REQUESTS
    return Shape(
        mode="closed",
        requests=requests,
        duration=options.duration,
        concurrency=options.concurrency or REFERENCE_CONCURRENCY,
    )


REFERENCE_SHAPE = Shape(
    mode="closed", requests=REFERENCE_REQUESTS, concurrency=REFERENCE_CONCURRENCY
)


def run_single(
    runner: Runner, options: ValidateOptions, peakshop: Server, minimal: Server | None
) -> list[Target]:
    shape = single_shape(options)
    rounds = options.rounds or 1
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for number in range(1, rounds + 1):
        ours.append(shape.measure(runner, f"peakshop #{number}", peakshop))
        if minimal is not None:
            theirs.append(shape.measure(runner, f"minimal #{number}", minimal))
    targets: list[Target] = []
    if shape.mode == "closed":
        note = f"median of {rounds} run(s)"
        if shape != REFERENCE_SHAPE or rounds != REFERENCE_RUNS:
            note += "; the issue's figure: 3 runs of 1,000 requests, 100 concurrent (--suite)"
        targets += reference_targets(ours, note)
        if theirs:
            targets.append(sustained_target(ours, theirs))
    elif theirs:
        targets.append(open_target(ours, theirs))
    return targets


@contextlib.contextmanager
def _servers(options: ValidateOptions) -> Iterator[tuple[Server, Server | None]]:
    with contextlib.ExitStack() as stack:
        if options.spawn:
            peakshop = stack.enter_context(spawn_peakshop())
        else:
            assert options.url is not None
            peakshop = attach("peakshop", options.url)
        minimal = None
        if options.suite or options.compare_minimal:
            if options.minimal_url is not None:
                minimal = attach("minimal", options.minimal_url)
            else:
                minimal = stack.enter_context(spawn_minimal(options.minimal_app))
        yield peakshop, minimal


def run(options: ValidateOptions, *, settings: Settings, console: Console) -> int:
    """The whole command: 0 when every run is valid and every target passes, else 1."""
    options.check()
    started = report.now_iso()
    machine = report.machine_info()  # before the runs: the load average says how busy it was
    weights = mix.parse_weights(options.mix)
    with console.status("reading the request mix from the database"):
        the_mix = mix.load(settings, size=options.pool, weights=weights, seed=options.seed)
    token = options.token or settings.service_token
    runner = Runner(
        console=console,
        bodies=the_mix.bodies(),
        token=token,
        procs=options.procs,
        timeout=options.timeout,
        max_lag_ms=options.max_lag_ms,
        preconnect=True,
        wait_quiet=options.wait_quiet
        if options.wait_quiet is not None
        else (SUITE_WAIT_QUIET if options.suite else 0.0),
    )
    extra: list[str] = []
    with _servers(options) as (peakshop, minimal):
        checked = asyncio.run(
            mix.check(url=peakshop.url + VALIDATE_PATH, token=token, items=the_mix.items)
        )
        mismatched = {k: v for k, v in checked.items() if len(v) > 1}
        if mismatched:
            extra.append(f"[yellow]mix check: the server disagrees with the mix: {mismatched}")
        for server in filter(None, (peakshop, minimal)):
            if options.warmup:
                runner.measure(
                    "warm-up",
                    server,
                    mode="closed",
                    requests=options.warmup,
                    concurrency=50,
                    keep=False,
                )
        if options.suite:
            assert minimal is not None
            targets = run_suite(
                runner, peakshop=peakshop, minimal=minimal, rounds=options.rounds or 3
            )
        else:
            targets = run_single(runner, options, peakshop, minimal)
        rss: dict[str, Any] | None = None
        if peakshop.spawned:
            memory_target, rss = rss_target(peakshop)
            targets.append(memory_target)
    busy = [r["name"] for r in runner.runs if (r["cpu_pct"]["other"] or 0) > BUSY_OTHER_PCT]
    if busy:
        extra.append(
            f"[yellow]other processes used over {BUSY_OTHER_PCT}% of a core during: "
            f"{', '.join(busy)}; those numbers are not this machine at rest"
        )
    report.print_report(console, runs=runner.runs, targets=targets, extra=extra)
    ok = all(t.passed for t in targets) and all(r["valid"] for r in runner.runs)
    if options.json_path is not None:
        document = {
            "scenario": "validate",
            "command": " ".join(["peakshop", *sys.argv[1:]]),
            "started_at": started,
            "finished_at": report.now_iso(),
            "machine": machine,
            "mode": settings.mode.value,
            "database": {
                "url": report.database_label(settings.database_url),
                "rows": the_mix.database,
            },
            "options": {
                k: str(v) if isinstance(v, Path) else v
                for k, v in asdict(options).items()
                if k != "token"
            },
            "mix": {
                "weights": {k.value: w for k, w in the_mix.weights.items()},
                "pool": the_mix.counts(),
                "candidates": {k.value: n for k, n in the_mix.candidates.items()},
                "check": checked,
            },
            "runs": runner.runs,
            "targets": [t.to_dict() for t in targets],
            "server_rss": rss,
            "all_passed": ok,
        }
        report.write_json(options.json_path, document)
        console.print(f"wrote {options.json_path}")
    return 0 if ok else 1
