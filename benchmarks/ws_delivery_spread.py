"""How long each ``metrics-update`` takes to reach every client: ``--clients`` aiohttp readers
of a running server's ``/ws/monitoring`` note when each update arrives, and for every
update that all of them received the time from the first arrival to the last is printed.
The fan-out paces its sends over ``PEAKSHOP_WS_SEND_SPREAD_SECONDS`` (0.5 s by default), so
that is about what to expect; more when the server's loop is busy.

    python benchmarks/ws_delivery_spread.py --url http://127.0.0.1:8000 [--clients 1000]
        [--seconds 12] [--token dev-admin-token]

The readers share this process's loop, so their own work (~20 us per frame) is inside the
figure: with 1,000 clients, up to ~20 ms of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import defaultdict

import aiohttp


async def _read(session: aiohttp.ClientSession, url: str, arrivals: dict[str, list[float]]) -> None:
    async with session.ws_connect(url) as websocket:
        async for message in websocket:
            event = json.loads(message.data)
            if event["type"] == "metrics-update":
                arrivals[f"{event['data']['pid']}@{event['at']}"].append(time.monotonic())


async def _run(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/").replace("http", "ws", 1) + f"/ws/monitoring?token={args.token}"
    arrivals: dict[str, list[float]] = defaultdict(list)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        readers = [asyncio.create_task(_read(session, url, arrivals)) for _ in range(args.clients)]
        await asyncio.sleep(args.seconds)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    spreads = []
    for update, times in sorted(arrivals.items()):
        if len(times) == args.clients:  # the first and last seconds reach only some
            spreads.append(max(times) - min(times))
            print(f"{update}: {spreads[-1]:.3f} s from the first client to the last")
    if not spreads:
        print("no update reached every client (connecting took the whole time?)")
        return 1
    print(
        f"{len(spreads)} updates: median {statistics.median(spreads):.3f} s, max {max(spreads):.3f} s"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a running peakshop server")
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--token", default="dev-admin-token", help="the admin token")
    return asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
