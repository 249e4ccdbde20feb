"""What connected live-dashboard clients cost an otherwise idle server: its CPU (every process
of ``peakshop serve``) over windows without clients and with ``--clients`` readers of
``/ws/monitoring``, alternating. The server's own share, apart from what the load generator
and the clients' process take from a 2-core machine (benchmarks/monitoring_overhead.py
measures the throughput lost under load).

    PEAKSHOP_DATABASE_URL=... python benchmarks/ws_idle_cost.py [--clients 1000]
        [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

from peakshop.bench.servers import Server, spawn_peakshop
from peakshop.config import load_settings
from ws_clients import WsClients

SETTLE_SECONDS = 3.0  # after connecting: the handshakes are not what is measured


def _cpu_pct(server: Server, seconds: float) -> float:
    server.mark_cpu()
    time.sleep(seconds)
    return 100 * server.cpu_since_mark() / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    token = load_settings().admin_token
    with spawn_peakshop() as server:
        url = server.url.replace("http://", "ws://") + f"/ws/monitoring?token={token}"
        for number in range(1, args.rounds + 1):
            alone = _cpu_pct(server, args.seconds)
            with WsClients(url, args.clients):
                time.sleep(SETTLE_SECONDS)
                with_clients = _cpu_pct(server, args.seconds)
            print(
                f"round {number}: server {alone:.2f}% of a core without clients, "
                f"{with_clients:.2f}% with {args.clients:,} (+{with_clients - alone:.2f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
