"""Does the load generator hold its rate? ``peakshop bench run``'s senders against the minimal
app, open loop, at rising constant rates.

The load-test issue's target: with ``--procs 2``, against the minimal app on this machine, the
sender holds the profile's rate within 1% up to 3,000 req/s and reports its own lag.

One profile is run with the senders of ``peakshop bench run`` (``orchestrate`` + ``driver``,
the same code, the same schedule): a short warm-up, then one steady phase per rate. For each
rate, the achieved rate is the requests that actually left (scheduled time + the sender's lag)
during the phase's inner full seconds (its first and last second are shared with the
neighbouring phases), divided by those seconds; the target is |achieved / rate - 1| <= 1%.
The sender's own lag is reported beside it: a phase whose lag P99 exceeds --max-lag-ms is
marked invalid (its latencies would include the sender's delay), which the note says; the
rate target is about the rate held, as the issue words it.

    python benchmarks/sender_accuracy.py [--rates 500,1000,2000,3000] [--seconds 20]
        [--procs 2] [--minimal-url URL] [--json benchmarks/results/sender_accuracy.json]

The minimal app (``benchmarks/minimal_app.py``) is spawned on a free port unless --minimal-url
names a running one. Run it on an otherwise idle machine: the senders and the server share it.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
MAX_RELATIVE_ERROR = 0.01  # the issue's "within 1%"
WARMUP_S = 3.0
ROUTE = "/api/v1/coupons/validate"


def workload(*, pool: int = 2_000) -> Any:
    """Pooled validation requests as the minimal app decodes them (half of the codes exist)."""
    from peakshop.bench.workload import Endpoint, Request, Workload

    endpoint = Endpoint(name="validate", method="POST", route=ROUTE)
    requests = tuple(
        Request(
            endpoint=0,
            target=ROUTE,
            body=(
                f'{{"code":"MIN-{n % 10_000:05d}","user_id":"user_{n:07d}",'
                f'"order_total":"{20 + n % 80}.90"}}'
            ).encode(),
        )
        for n in range(pool)
    )
    return Workload(
        name="minimal-validate",
        endpoints=(endpoint,),
        requests=requests,
        pool=tuple(range(pool)),
        details={"pool": pool, "route": ROUTE},
    )


def profile(rates: Sequence[float], *, seconds: float) -> Any:
    """A warm-up (not measured), then one steady phase of ``seconds`` per rate."""
    from peakshop.bench.profiles import Phase, Profile

    warmup = Phase(
        name="warm-up", duration=WARMUP_S, start_rate=rates[0], end_rate=rates[0], measured=False
    )
    steps = tuple(
        Phase(name=f"{rate:g}/s", duration=seconds, start_rate=rate, end_rate=rate)
        for rate in rates
    )
    return Profile(
        name="sender-accuracy",
        phases=(warmup, *steps),
        description=f"{WARMUP_S:g} s warm-up, then {seconds:g} s at each of "
        + ", ".join(f"{rate:g}" for rate in rates)
        + " req/s",
    )


def achieved(
    series: Mapping[str, Sequence[Any]], *, start_s: float, duration_s: float
) -> tuple[int, int]:
    """(requests actually sent, seconds) over the phase's inner full seconds."""
    first, last = int(start_s) + 1, int(start_s + duration_s) - 1
    seconds = range(first, min(last, len(series["sent"])))
    return sum(series["sent"][s] for s in seconds), len(seconds)


def rate_runs(
    phases: Sequence[Mapping[str, Any]],
    series: Mapping[str, Sequence[Any]],
    *,
    rates: Mapping[str, float],
) -> list[dict[str, Any]]:
    """One entry per measured phase; ``rates``: each phase's rate in the profile, by name."""
    runs = []
    for phase in phases:
        if not phase["measured"]:
            continue
        target = rates[phase["name"]]
        sent, seconds = achieved(series, start_s=phase["start_s"], duration_s=phase["duration_s"])
        rps = sent / seconds if seconds else None
        runs.append(
            {
                "name": phase["name"],
                "target_rps": target,
                "duration_s": phase["duration_s"],
                "inner_seconds": seconds,
                "sent_in_inner_seconds": sent,
                "achieved_rps": rps,
                "relative_error": None if rps is None else rps / target - 1,
                "planned": phase["planned"],
                "sent": phase["sent"],
                "ok": phase["ok"],
                "failed": phase["failed"],
                "statuses": phase["statuses"],
                "errors": phase["errors"],
                "throughput_rps": phase["throughput_rps"],
                "lag_ms": phase["lag_ms"],
                "early_sends": phase["early_sends"],
                "send_accuracy": phase["send_accuracy"],
                "latency_ms": phase["latency_ms"],
                "valid": phase["valid"],
                "invalid_reason": phase["invalid_reason"],
            }
        )
    return runs


def targets(runs: Sequence[Mapping[str, Any]], *, procs: int) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        error = run["relative_error"]
        measured = None if error is None else abs(error) * 100
        lag = run["lag_ms"]
        # The rate held is the target; the lag is reported (and an invalid phase says so).
        passed = measured is not None and measured <= MAX_RELATIVE_ERROR * 100
        achieved_rps = run["achieved_rps"]
        note = (
            f"achieved {achieved_rps:,.1f} of {run['target_rps']:,.0f} req/s; "
            if achieved_rps is not None
            else "nothing measured; "
        )
        note += (
            f"sender lag P99 {_num(lag['p99'], '.3f')} ms, max {_num(lag['max'], '.3f')} ms; "
            f"{run['failed']:,} failed"
        )
        if not run["valid"]:
            note += f"; invalid: {run['invalid_reason']}"
        out.append(
            {
                "name": f"rate_{run['target_rps']:g}",
                "description": f"{procs} sender processes at {run['target_rps']:,.0f} req/s "
                "vs the minimal app: |achieved / target - 1|",
                "measured": measured,
                "limit": MAX_RELATIVE_ERROR * 100,
                "comparison": "<=",
                "unit": "%",
                "passed": passed,
                "from_valid_runs": bool(run["valid"]),
                "note": note,
            }
        )
    return out


@contextlib.contextmanager
def _minimal(url: str | None, app: Path) -> Iterator[Any]:
    from peakshop.bench.servers import attach, spawn_minimal

    if url is not None:
        yield attach("minimal", url)
        return
    with spawn_minimal(app) as server:
        yield server


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from peakshop.bench import report, results
    from peakshop.bench.driver import DriverSpec
    from peakshop.bench.orchestrate import run as orchestrate
    from peakshop.bench.profiles import Schedule
    from peakshop.bench.runner import _busy
    from peakshop.bench.timeline import Timeline

    rates = [float(r) for r in args.rates.split(",")]
    load = workload()
    plan = profile(rates, seconds=args.seconds)
    started_at, machine = report.now_iso(), report.machine_info()
    with _minimal(args.minimal_url, args.minimal_app) as server:
        print(f"{plan.description}, {args.procs} sender process(es), against {server.url}")
        spec = DriverSpec(
            base_url=server.url,
            workload=load,
            profile=plan,
            seed=42,
            run_id=secrets.token_hex(4),
            connections=args.connections,
            timeout=args.timeout,
        )
        timeline = Timeline(
            phases=plan.phases, endpoints=load.endpoints, horizon_s=args.timeout + 5
        )
        marks: dict[str, Any] = {}

        def started() -> None:
            server.mark_cpu()
            marks["before"], marks["own"] = psutil.cpu_times(), time.process_time()

        def finished() -> None:
            marks["server"] = server.cpu_since_mark() if server.spawned else None
            marks["after"], marks["own"] = psutil.cpu_times(), time.process_time() - marks["own"]

        outcome = orchestrate(
            spec, timeline, procs=args.procs, on_start=started, on_finish=finished
        )
    seconds = outcome.duration_s
    busy = _busy(marks["after"]) - _busy(marks["before"])
    bench = outcome.sender_cpu_s + marks["own"]
    server_cpu = marks["server"]
    # "other": what else ran on the machine meanwhile (clearly positive: a disturbed run).
    cpu_pct = {
        "machine_busy": 100 * busy / seconds,
        "server": None if server_cpu is None else 100 * server_cpu / seconds,
        "bench": 100 * bench / seconds,
        "other": None if server_cpu is None else 100 * (busy - server_cpu - bench) / seconds,
    }
    series = timeline.series(phase_starts_s=Schedule(plan).phase_starts_s)
    phases = results.phases(outcome, plan, load.endpoints, series, max_lag_ms=args.max_lag_ms)
    runs = rate_runs(phases, series, rates={p.name: p.end_rate for p in plan.phases})
    found = targets(runs, procs=args.procs)
    return {
        "scenario": "sender-accuracy",
        "command": shlex.join(["python", *sys.argv]),
        "started_at": started_at,
        "finished_at": report.now_iso(),
        "machine": machine,
        "options": {
            "rates": rates,
            "seconds": args.seconds,
            "warmup_s": WARMUP_S,
            "procs": args.procs,
            "connections": args.connections,
            "max_lag_ms": args.max_lag_ms,
            "timeout_s": args.timeout,
            "minimal_url": args.minimal_url,
        },
        "target": {"url": server.url, "spawned": server.spawned, "app": "minimal"},
        "senders": {
            "procs": args.procs,
            "cpu_s": outcome.sender_cpu_s,
            "duration_s": outcome.duration_s,
        },
        "server_cpu_s": server_cpu,
        "cpu_pct": cpu_pct,
        "runs": runs,
        "targets": found,
        "all_passed": bool(found) and all(t["passed"] for t in found),
    }


def print_table(doc: Mapping[str, Any]) -> None:
    cpu = doc["cpu_pct"]
    print(
        f"CPU over the run (% of one core): machine busy {_num(cpu['machine_busy'], '.0f')}; "
        + ", ".join(f"{k} {_num(cpu[k], '.0f')}" for k in ("server", "bench", "other"))
    )
    print(
        f"{'rate':>8} {'achieved':>10} {'error %':>8} {'per-s max %':>11} "
        f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'failed':>7}  verdict"
    )
    for run, target in zip(doc["runs"], doc["targets"], strict=True):
        lag, accuracy = run["lag_ms"], run["send_accuracy"]
        rps = run["achieved_rps"]
        print(
            f"{run['target_rps']:>8,.0f} {_num(rps, '10,.1f')} {_num(target['measured'], '8.3f')} "
            f"{_num(accuracy['max_abs_pct'], '11.2f')} {_num(lag['p50'], '8.3f')} "
            f"{_num(lag['p99'], '8.3f')} {_num(lag['max'], '8.3f')} {run['failed']:>7,}  "
            + ("pass" if target["passed"] else "FAIL")
            + ("" if run["valid"] else f" ({run['invalid_reason']})")
        )


def _num(value: float | None, spec: str) -> str:
    width = int(spec.split(",")[0].split(".")[0] or 0)
    return f"{value:{spec}}" if value is not None else "-".rjust(width)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,3000", help="req/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds at each rate")
    parser.add_argument("--procs", type=int, default=2, help="sender processes")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--max-lag-ms", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--minimal-url", help="a running minimal app (default: spawn one)")
    parser.add_argument("--minimal-app", type=Path, default=HERE / "minimal_app.py")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "sender_accuracy.json")
    args = parser.parse_args()
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error("--rates: numbers separated by commas")
    if not rates or any(r <= 0 for r in rates) or args.seconds < 3:
        parser.error("--rates must be positive and --seconds at least 3")

    from peakshop.bench import report

    doc = measure(args)
    print_table(doc)
    report.write_json(args.json, doc)
    print(f"wrote {args.json}")
    return 0 if doc["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
