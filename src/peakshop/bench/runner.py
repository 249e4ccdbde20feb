"""One measured run against one server: the load, a progress bar, and what else the machine did.

Besides the load generator's own numbers, each run records the server's CPU time (when it
was spawned here), the senders' CPU time and the whole machine's busy time, so a report
shows who used the two cores: the server, the senders, or something else on the machine
(other engineers' test runs, for instance). A run with much "other" CPU is suspect.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from peakshop.bench import report, senders
from peakshop.bench.loadgen import LoadSpec, Mode
from peakshop.bench.servers import RssSampler, Server

VALIDATE_PATH = "/api/v1/coupons/validate"
# An idle machine (servers waiting, nothing else running) stays well under this.
QUIET_BUSY_PCT = 15.0


@dataclass(kw_only=True)
class Runner:
    console: Console
    bodies: Sequence[bytes]
    token: str
    procs: int = 1
    timeout: float = 30.0
    max_lag_ms: float = 5.0
    path: str = VALIDATE_PATH
    body_headers: Sequence[Mapping[str, str]] | None = None
    ok_statuses: frozenset[int] = frozenset(range(200, 300))
    method: Literal["POST", "GET"] = "POST"
    wait_quiet: float = 0.0  # seconds to wait, before each run, for the machine to be idle
    # Closed loop: connections opened before the clock starts (LoadSpec.preconnect); only
    # for requests that may be repeated unmeasured (a validation, not an order).
    preconnect: bool = False
    runs: list[dict[str, Any]] = field(default_factory=list)

    def measure(
        self,
        name: str,
        server: Server,
        *,
        mode: Mode,
        concurrency: int,
        requests: int | None = None,
        duration: float | None = None,
        rate: float | None = None,
        keep: bool = True,
    ) -> dict[str, Any]:
        """Run the load against ``server`` and return its summary (kept in ``runs`` unless
        ``keep`` is false, as for warm-ups)."""
        spec = LoadSpec(
            url=server.url + self.path,
            bodies=self.bodies,
            headers={"Authorization": f"Bearer {self.token}"},
            body_headers=self.body_headers,
            ok_statuses=self.ok_statuses,
            method=self.method,
            mode=mode,
            concurrency=concurrency,
            requests=requests,
            duration=duration,
            rate=rate,
            timeout=self.timeout,
            preconnect=self.preconnect,  # closed loop only (LoadSpec)
        )
        waited = wait_until_quiet(timeout=self.wait_quiet) if self.wait_quiet else None
        marks: dict[str, Any] = {}

        def started() -> None:
            server.mark_cpu()
            marks["before"] = psutil.cpu_times()
            marks["own_before"] = time.process_time()

        def finished() -> None:
            marks["server_cpu"] = server.cpu_since_mark() if server.spawned else None
            marks["after"] = psutil.cpu_times()
            marks["own"] = time.process_time() - marks["own_before"]

        with RssSampler([server]), self._progress(name, spec) as update:
            result = senders.run(
                spec, procs=self.procs, on_progress=update, on_start=started, on_finish=finished
            )
        summary = report.summarize(
            result,
            name=name,
            server=server.name,
            concurrency=concurrency,
            rate=rate,
            requested_requests=requests,
            requested_duration_s=duration,
        )
        self._add_cpu(summary, marks)
        if waited is not None:
            summary["waited_for_quiet_s"], summary["busy_before_pct"] = waited
        judge(summary, max_lag_ms=self.max_lag_ms)
        if server.spawned:
            summary["server_rss_bytes_after"] = server.memory()["rss"]
        if keep:
            self.runs.append(summary)
        return summary

    def _progress(self, name: str, spec: LoadSpec) -> _ProgressBar:
        return _ProgressBar(self.console, name, spec)

    def _add_cpu(self, summary: dict[str, Any], marks: dict[str, Any]) -> None:
        busy = _busy(marks["after"]) - _busy(marks["before"])
        seconds = summary["duration_s"]
        server_cpu = marks["server_cpu"]
        # The bench: its senders and this orchestrating process (progress bar, RSS sampling).
        bench_cpu = summary["sender_cpu_s"] + marks["own"]
        steal = getattr(marks["after"], "steal", 0.0) - getattr(marks["before"], "steal", 0.0)
        summary["cpu_pct"] = {
            # Percent of one core over the run; the machine has os.cpu_count() of them.
            "machine_busy": 100 * busy / seconds,
            "steal": 100 * steal / seconds,  # taken by the hypervisor: a noisy neighbour
            "server": None if server_cpu is None else 100 * server_cpu / seconds,
            "bench": 100 * bench_cpu / seconds,
            "other": None
            if server_cpu is None
            else 100 * (busy - server_cpu - bench_cpu) / seconds,
        }
        # What one request costs the server, all its threads included: comparable across
        # servers and runs even when the throughput is limited by something else.
        responses = summary["total"] - sum(summary["errors"].values())
        summary["server_cpu_us_per_request"] = (
            None if server_cpu is None or not responses else server_cpu / responses * 1e6
        )


def judge(summary: dict[str, Any], *, max_lag_ms: float) -> None:
    """Mark a run valid or not. A run with failed requests did not measure the service; an
    open-loop run whose sender fell behind its schedule measured the sender, not the server
    (its latencies carry the sender's own delay)."""
    reasons = []
    if summary["failed"]:
        reasons.append(f"{summary['failed']:,} of {summary['total']:,} requests failed")
    lag_p99 = summary["lag_ms"]["p99"] if summary["mode"] == "open" else None
    if lag_p99 is not None and lag_p99 > max_lag_ms:
        reasons.append(
            f"sender could not keep up: send lag p99 {lag_p99:.3f} ms > {max_lag_ms} ms "
            "(latencies include the sender's own delay)"
        )
    summary["valid"] = not reasons
    summary["invalid_reason"] = "; ".join(reasons) or None


def wait_until_quiet(
    *, timeout: float, window: float = 1.0, max_busy_pct: float = QUIET_BUSY_PCT
) -> tuple[float, float]:
    """Wait (up to ``timeout`` s) for a ``window`` during which the whole machine was busy
    less than ``max_busy_pct`` of one core: other people's test runs on a shared machine
    would otherwise be measured along with the server. Returns (seconds waited, busy % of
    the last window); the run goes ahead after the timeout either way, and its "other" CPU
    shows whether it was disturbed."""
    started = time.monotonic()
    while True:
        before = _busy(psutil.cpu_times())
        time.sleep(window)
        busy_pct = 100 * (_busy(psutil.cpu_times()) - before) / window
        waited = time.monotonic() - started
        if busy_pct < max_busy_pct or waited >= timeout:
            return waited, busy_pct


def _busy(times: Any) -> float:
    # guest time is already inside user time on Linux; steal is not this machine's work.
    fields = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in fields))


class _ProgressBar:
    """Requests sent so far; duration-bound runs fill the bar by time."""

    def __init__(self, console: Console, name: str, spec: LoadSpec) -> None:
        self._by_time = spec.duration is not None
        total = spec.duration if self._by_time else spec.requests
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[sent]:>9,} sent"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(name, total=total, sent=0)
        self._started = 0.0

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        self._started = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def __call__(self, sent: int) -> None:
        done = time.monotonic() - self._started if self._by_time else sent
        self._progress.update(self._task, completed=done, sent=sent)
