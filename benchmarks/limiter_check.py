"""Micro-benchmark of ``RateLimiter.check``: microseconds per call with the rule off, with the
per-user limit on (the default of validation) and with per-user and per-IP limits on (the
default of orders), in-process storage (embedded mode) and optionally Redis (scaled mode).

    python benchmarks/limiter_check.py [--calls 200000] [--users 10000] [--ips 1000]
                                       [--redis-url redis://127.0.0.1:6379/0]

Calls go round-robin over the users and IPs, sequentially (one event loop, as in a server
process). The limits are the defaults (100/second per user, 1000/second per IP); calls that
they refuse are counted and reported, since a refusal costs more than an acceptance.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time

import limits

from peakshop.config import load_settings
from peakshop.errors import RateLimited
from peakshop.state.limiter import build_limiter

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows
    uvloop = None  # type: ignore[assignment]


async def _run(
    per_user: str, per_ip: str, *, calls: int, users: int, ips: int, redis_url: str | None
) -> tuple[float, int]:
    settings = load_settings(
        environ={},
        redis_url=redis_url,
        rate_limit_validate_per_user=per_user,
        rate_limit_validate_per_ip=per_ip,
    )
    limiter = build_limiter(settings)
    user_ids = [f"user_{i:07d}" for i in range(users)]
    addresses = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(ips)]
    refused = 0
    try:
        await limiter.check("validate", user_id="warm-up", client_ip="127.0.0.1")
        started = time.perf_counter()
        for i in range(calls):
            try:
                await limiter.check(
                    "validate", user_id=user_ids[i % users], client_ip=addresses[i % ips]
                )
            except RateLimited:
                refused += 1
        return (time.perf_counter() - started) / calls * 1e6, refused
    finally:
        await limiter.close()


async def main(*, calls: int, users: int, ips: int, redis_url: str | None) -> None:
    print(f"Python {platform.python_version()}, limits {limits.__version__}, {platform.machine()}")
    print(f"{calls} calls (20000 on Redis) over {users} users and {ips} client IPs")
    cases = [
        ("off", "", ""),
        ("per user", "100/second", ""),
        ("per user + per IP", "100/second", "1000/second"),
    ]
    modes: list[tuple[str, str | None]] = [("memory", None)]
    if redis_url:
        modes.append(("redis", redis_url))
    for mode, url in modes:
        for label, per_user, per_ip in cases:
            micros, refused = await _run(
                per_user,
                per_ip,
                calls=calls if url is None else min(calls, 20_000),
                users=users,
                ips=ips,
                redis_url=url,
            )
            print(f"  {mode:6} {label:18} {micros:8.2f} us/call   refused {refused}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--ips", type=int, default=1_000)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    runner(main(calls=args.calls, users=args.users, ips=args.ips, redis_url=args.redis_url))
