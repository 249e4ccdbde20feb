"""What live monitoring costs coupon validation: throughput with monitoring on and off, and with
0 and 1,000 WebSocket clients reading the live events, measured in the same run.

1. ``peakshop seed`` the default data set (1M users, 5K coupons) into ``var/monitoring.db``
   (``--reuse`` keeps data already there);
2. two ``peakshop serve`` processes on free ports, one with monitoring on (the default), one
   with ``PEAKSHOP_MONITORING_ENABLED=false`` (no HTTP metrics, no per-second counters, no
   monitor tick, no live events);
3. rounds of closed-loop validate runs (the load generator of ``peakshop bench validate``):
   off, on, and on with 1,000 clients connected to ``/ws/monitoring`` and reading; the order
   is reversed every other round, so that drift on the machine hits every variant alike;
4. targets (the live-monitoring issue): 1 - on/off <= 5 %, 1 - (on with clients)/on <= 5 %,
   from the medians; the JSON (runs, targets, machine) goes to --json.

    python benchmarks/monitoring_overhead.py [--rounds 9] [--duration 6] [--reuse]
        [--json benchmarks/results/monitoring_overhead.json]

The 1,000 clients run in a process of their own, so that they do not share the load
generator's event loop; what the server spends sending to them is what is measured. They
are cheap readers: real WebSocket clients (the opening handshake, then every frame read and
counted from its header), all on one selector in one thread. On this 2-core machine their
CPU is taken from the server and the load generator, so it would count as the server's
cost: aiohttp clients (used before) took ~16-20 us of CPU per event received, these take
~7-8 us (1,000 clients, 10 events a second, measured against the same server). The process
still uses some CPU while the server sends: each such run reports it
(``ws_clients.cpu_pct``). Run it on an otherwise idle machine. Exit code: 0 when every
target passed, 1 when one did not (the JSON is written either way), 2 on an error, as
run_validate_suite.py and the other benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from peakshop.bench import mix, report
from peakshop.bench.report import Target
from peakshop.bench.runner import Runner
from peakshop.bench.servers import Server, spawn_peakshop
from peakshop.config import load_settings
from ws_clients import WsClients

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAX_COST_PCT = 5.0  # the live-monitoring issue: each costs at most 5% of validate throughput
WS_CLIENTS = 1_000
CONCURRENCY = 100  # as the validate suite's sustained runs
SETTLE_SECONDS = 2.0  # after the clients connected: every one has had a metrics-update
VARIANTS = ("off", "on", "on_ws")


# --- the runs ----------------------------------------------------------------------------------


def _env(database_url: str, *, monitoring: bool = True) -> dict[str, str]:
    # Settings are strict and the caller's PEAKSHOP_* would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKSHOP_")}
    env["PEAKSHOP_DATABASE_URL"] = database_url
    if not monitoring:
        env["PEAKSHOP_MONITORING_ENABLED"] = "false"
    return env


def _raise_file_limit() -> None:
    """1,000 WebSocket connections need as many descriptors in the server (which inherits
    this limit) and in the clients' process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _measure_with_clients(
    runner: Runner, name: str, server: Server, args: argparse.Namespace, token: str
) -> dict[str, Any]:
    url = server.url.replace("http://", "ws://") + f"/ws/monitoring?token={token}"
    with WsClients(url, args.clients) as clients:
        time.sleep(SETTLE_SECONDS)
        cpu_before, wall_before = clients.cpu_seconds(), time.monotonic()
        summary = _measure(runner, name, server, args)
        cpu = clients.cpu_seconds() - cpu_before
        wall = time.monotonic() - wall_before
    ended = clients.report
    summary["ws_clients"] = {
        "wanted": args.clients,
        "connected": clients.connected,
        **ended,
        # Over the whole measure() call (sender start-up included), so a little above the
        # run's own share: the honest upper side.
        "cpu_s": cpu,
        "window_s": wall,
        "cpu_pct": 100 * cpu / wall,
    }
    problems = []
    if ended.get("open_at_end") != args.clients:
        problems.append(f"{ended.get('open_at_end')} of {args.clients} clients open at the end")
    if not ended.get("events_min_per_open_client"):
        problems.append("a client received no event")
    if problems:
        summary["valid"] = False
        reason = "; ".join(filter(None, [summary.get("invalid_reason"), *problems]))
        summary["invalid_reason"] = reason
    return summary


def _measure(runner: Runner, name: str, server: Server, args: argparse.Namespace) -> dict[str, Any]:
    duration: float = args.duration
    concurrency: int = args.concurrency
    return runner.measure(name, server, mode="closed", duration=duration, concurrency=concurrency)


def _median(runs: list[dict[str, Any]]) -> float:
    return float(statistics.median(r["throughput_rps"] for r in runs))


def _cost_target(
    name: str, description: str, test: list[dict[str, Any]], base: list[dict[str, Any]], note: str
) -> tuple[Target, dict[str, Any]]:
    a, b = _median(test), _median(base)
    paired = [t["throughput_rps"] / s["throughput_rps"] for t, s in zip(test, base, strict=True)]
    valid = all(r["valid"] for r in test + base)
    target = Target(
        name=name,
        description=description,
        measured=round(100 * (1 - a / b), 2),
        limit=MAX_COST_PCT,
        unit="%",
        higher_is_better=False,
        note=f"medians {a:,.0f} / {b:,.0f} req/s = {a / b:.3f} over {len(test)} round(s); "
        f"per-round ratios {', '.join(f'{r:.3f}' for r in paired)}"
        + (f"; {note}" if note else "")
        + ("" if valid else "; from an INVALID run (see runs)"),
        from_valid_runs=valid,
    )
    detail = {"median_rps": a, "baseline_median_rps": b, "ratio": a / b, "per_round": paired}
    return target, detail


def _targets(by_variant: dict[str, list[dict[str, Any]]]) -> tuple[list[Target], dict[str, Any]]:
    metrics_target, metrics_detail = _cost_target(
        "monitoring_overhead",
        "metrics and event machinery: validate throughput lost, 1 - on/off",
        by_variant["on"],
        by_variant["off"],
        "",
    )
    clients = [r["ws_clients"] for r in by_variant["on_ws"]]
    client_cpu = statistics.median(c["cpu_pct"] for c in clients)
    ws_target, ws_detail = _cost_target(
        "ws_clients_overhead",
        f"{clients[0]['wanted']:,} WebSocket clients reading: validate throughput lost, "
        "1 - (on with clients)/on",
        by_variant["on_ws"],
        by_variant["on"],
        f"the clients' own process used a median {client_cpu:.1f}% of a core meanwhile "
        f"(on {os.cpu_count()} cores, shared with the server and the load generator)",
    )
    ws_detail["clients_cpu_pct_median"] = client_cpu
    return [metrics_target, ws_target], {"metrics": metrics_detail, "ws_clients": ws_detail}


@contextlib.contextmanager
def _servers(database_url: str) -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        # One after the other: the first start migrates the database.
        on = stack.enter_context(spawn_peakshop(env=_env(database_url)))
        off = stack.enter_context(spawn_peakshop(env=_env(database_url, monitoring=False)))
        on.name, off.name = "peakshop (monitoring on)", "peakshop (monitoring off)"
        yield {"on": on, "off": off, "on_ws": on}


def _run(args: argparse.Namespace, console: Console) -> int:
    started = report.now_iso()
    machine = report.machine_info()
    env = _env(args.database_url)
    seed = [sys.executable, "-m", "peakshop", "seed", "--if-empty" if args.reuse else "--reset"]
    console.print("$ " + shlex.join(seed))
    if subprocess.run(seed, env=env, cwd=ROOT, check=False).returncode:
        console.print("[red]error: the seed failed")
        return 2
    settings = load_settings(environ=env)
    with console.status("reading the request mix from the database"):
        the_mix = mix.load(settings, size=args.pool, weights=mix.parse_weights(None), seed=42)
    runner = Runner(
        console=console,
        bodies=the_mix.bodies(),
        token=settings.service_token,
        procs=args.procs,
        wait_quiet=args.wait_quiet,
    )
    _raise_file_limit()
    by_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with _servers(args.database_url) as servers:
        for server in (servers["off"], servers["on"]):
            runner.measure(
                "warm-up", server, mode="closed", requests=args.warmup, concurrency=50, keep=False
            )
        for number in range(1, args.rounds + 1):
            order = VARIANTS if number % 2 else tuple(reversed(VARIANTS))
            for variant in order:
                name, server = f"{variant} #{number}", servers[variant]
                if variant == "on_ws":
                    summary = _measure_with_clients(
                        runner, name, server, args, settings.admin_token
                    )
                else:
                    summary = _measure(runner, name, server, args)
                summary["variant"], summary["round"] = variant, number
                by_variant[variant].append(summary)
    targets, summary = _targets(by_variant)
    report.print_report(console, runs=runner.runs, targets=targets, extra=[])
    passed = all(t.passed for t in targets)
    document = {
        "scenario": "monitoring_overhead",
        "command": shlex.join([sys.executable, *sys.argv]),
        "started_at": started,
        "finished_at": report.now_iso(),
        "machine": machine,
        "mode": settings.mode.value,
        "database": {"url": report.database_label(args.database_url), "rows": the_mix.database},
        "options": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "clients": args.clients,
            "procs": args.procs,
            "warmup": args.warmup,
            "wait_quiet": args.wait_quiet,
        },
        "summary": {
            "median_rps": {v: _median(runs) for v, runs in by_variant.items()},
            **summary,
        },
        "runs": runner.runs,
        "targets": [t.to_dict() for t in targets],
        "all_passed": passed,
    }
    report.write_json(args.json, document)
    console.print(f"wrote {args.json}")
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default=f"sqlite+aiosqlite:///{ROOT / 'var' / 'monitoring.db'}"
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "monitoring_overhead.json")
    # Many short rounds rather than a few long ones: on this VM the throughput of one variant
    # moved by up to 20% between neighbouring 10 s runs (2026-11-25), and a median over more
    # rounds, each three runs close together, steadies the ratios.
    parser.add_argument("--rounds", type=int, default=9, help="rounds of off, on, on + clients")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of each run")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="connections")
    parser.add_argument("--clients", type=int, default=WS_CLIENTS, help="WebSocket clients")
    parser.add_argument("--procs", type=int, default=1, help="sender processes")
    parser.add_argument("--pool", type=int, default=20_000, help="distinct request bodies")
    parser.add_argument("--warmup", type=int, default=2_000, help="requests before the rounds")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="seconds to wait before each run for the machine to be idle",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep a database that already holds data"
    )
    args = parser.parse_args()
    if min(args.rounds, args.clients, args.concurrency, args.procs) < 1 or args.duration <= 0:
        parser.error("--rounds, --clients, --concurrency, --procs and --duration must be positive")
    if args.database_url.startswith("sqlite+aiosqlite:///"):
        Path(args.database_url.removeprefix("sqlite+aiosqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    console = Console()
    try:
        return _run(args, console)
    except (RuntimeError, OSError, mix.MixError) as exc:
        console.print(f"[red]error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
