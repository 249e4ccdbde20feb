"""What pacing the live events' sends buys: validate throughput with and without 1,000
WebSocket clients, on one server per ``PEAKSHOP_WS_SEND_SPREAD_SECONDS`` value, in the same
run (the same code; only the setting differs).

    python benchmarks/ws_send_spread.py [--spreads 0,0.25,0.5] [--rounds 10] [--duration 6]
        [--json benchmarks/results/ws_send_spread.json]

Each round measures every server without clients and with 1,000 readers of
``/ws/monitoring`` connected (benchmarks/ws_clients.py), closed loop with 100 connections,
in an order reversed every other round. The loss of each server is 1 - with/without, as
the median of the per-round ratios (the rounds pair runs made close together, so drift on
the machine cancels) and from the medians of each, as monitoring_overhead.py reports it.
Uses the database of monitoring_overhead.py (``var/monitoring.db``, seeded there).
Spread 0 sends each event to every client at once (the fan-out before it was paced).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from monitoring_overhead import CONCURRENCY, ROOT, WS_CLIENTS, _env, _raise_file_limit
from peakshop.bench import mix, report
from peakshop.bench.runner import Runner
from peakshop.bench.servers import Server, spawn_peakshop
from peakshop.config import load_settings
from ws_clients import WsClients

SETTLE_SECONDS = 2.0  # after the clients connected, as monitoring_overhead.py


def _measure(runner: Runner, server: Server, args: argparse.Namespace, name: str) -> float:
    summary = runner.measure(
        name, server, mode="closed", duration=args.duration, concurrency=CONCURRENCY
    )
    if not summary["valid"]:
        raise RuntimeError(f"{name}: invalid run ({summary.get('invalid_reason')})")
    return float(summary["throughput_rps"])


def _round(
    runner: Runner, servers: dict[float, Server], args: argparse.Namespace, number: int, token: str
) -> dict[float, tuple[float, float]]:
    runs = [(spread, clients) for spread in servers for clients in (False, True)]
    if number % 2 == 0:
        runs.reverse()
    measured: dict[tuple[float, bool], float] = {}
    for spread, clients in runs:
        server, name = (
            servers[spread],
            f"spread {spread} {'with' if clients else 'without'} #{number}",
        )
        if clients:
            url = server.url.replace("http://", "ws://") + f"/ws/monitoring?token={token}"
            with WsClients(url, args.clients) as readers:
                time.sleep(SETTLE_SECONDS)
                measured[spread, True] = _measure(runner, server, args, name)
            if readers.report.get("open_at_end") != args.clients:
                raise RuntimeError(f"{name}: {readers.report} (not every client stayed)")
        else:
            measured[spread, False] = _measure(runner, server, args, name)
    return {spread: (measured[spread, False], measured[spread, True]) for spread in servers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spreads", default="0,0.25,0.5", help="seconds, comma-separated")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of each run")
    parser.add_argument("--clients", type=int, default=WS_CLIENTS)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks/results/ws_send_spread.json"
    )
    args = parser.parse_args()
    spreads = [float(value) for value in args.spreads.split(",")]
    database_url = f"sqlite+aiosqlite:///{ROOT / 'var' / 'monitoring.db'}"
    console = Console()
    settings = load_settings(environ=_env(database_url))
    the_mix = mix.load(settings, size=20_000, weights=mix.parse_weights(None), seed=42)
    runner = Runner(console=console, bodies=the_mix.bodies(), token=settings.service_token)
    _raise_file_limit()
    started = report.now_iso()
    pairs: dict[float, list[tuple[float, float]]] = {spread: [] for spread in spreads}
    with contextlib.ExitStack() as stack:
        servers = {}
        for spread in spreads:
            env = _env(database_url)
            env["PEAKSHOP_WS_SEND_SPREAD_SECONDS"] = str(spread)
            servers[spread] = stack.enter_context(spawn_peakshop(env=env))
            runner.measure(
                "warm-up",
                servers[spread],
                mode="closed",
                requests=2_000,
                concurrency=50,
                keep=False,
            )
        for number in range(1, args.rounds + 1):
            for spread, pair in _round(runner, servers, args, number, settings.admin_token).items():
                pairs[spread].append(pair)
            console.print(
                f"round {number}: "
                + "  ".join(f"spread {s}: {p[-1][1] / p[-1][0]:.3f}" for s, p in pairs.items())
            )
    results: list[dict[str, Any]] = []
    for spread, measured in pairs.items():
        without = [a for a, _ in measured]
        with_clients = [b for _, b in measured]
        paired = [b / a for a, b in measured]
        results.append(
            {
                "spread_s": spread,
                "loss_pct_paired_median": 100 * (1 - statistics.median(paired)),
                "loss_pct_from_medians": 100
                * (1 - statistics.median(with_clients) / statistics.median(without)),
                "per_round_ratios": paired,
                "rps_without": without,
                "rps_with_clients": with_clients,
            }
        )
        console.print(
            f"spread {spread} s: {results[-1]['loss_pct_paired_median']:.1f} % lost "
            f"(median of the per-round ratios), {results[-1]['loss_pct_from_medians']:.1f} % "
            "from the medians"
        )
    report.write_json(
        args.json,
        {
            "scenario": "ws_send_spread",
            "command": shlex.join([sys.executable, *sys.argv]),
            "started_at": started,
            "finished_at": report.now_iso(),
            "machine": report.machine_info(),
            "options": {
                "rounds": args.rounds,
                "duration_s": args.duration,
                "clients": args.clients,
                "concurrency": CONCURRENCY,
            },
            "results": results,
        },
    )
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
