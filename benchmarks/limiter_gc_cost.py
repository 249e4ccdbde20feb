"""What the in-process rate limiter's windows cost the garbage collector: validation's
per-user limit (100/second) checked for users drawn from a skewed pool, at a fixed rate, for
a span of simulated time (the storage reads a fake clock, so a minute of load runs in a few
seconds). For the storage as it is (hit times as floats, cut to the window at every hit) and,
with ``--objects``, as it was (a tracked object per hit, like limits' ``Entry``, cut only to
the limit's size until the key went quiet): the hits held at the end, how many of them
the collector tracks, and what one full collection then takes (in the server, under load,
one ran about twice a second).

    python benchmarks/limiter_gc_cost.py [--rate 8500] [--seconds 60] [--pool 20000] [--objects]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import itertools
import random
import time
import types
from unittest import mock

from peakshop.state import limiter
from peakshop.state.limiter import InProcessStorage

LIMIT, WINDOW = 100, 1


class _Hit:
    """As limits' ``Entry``: a plain object, which the collector tracks."""

    def __init__(self, now: float) -> None:
        self.atime = now
        self.expiry = now + WINDOW


class ObjectsPerHit(InProcessStorage):
    """The storage before 2026-12-07, for contrast: an object per hit, a key's list cut to
    the limit and dropped only once its newest hit has left the window."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: dict[str, list[_Hit]] = {}

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = clock.time()
        while self._expiring and self._expiring[0][0] <= now:
            _, gone, _ = self._expiring.popleft()
            hits = self.windows.get(gone)
            if hits is not None and hits[0].expiry <= now:
                del self.windows[gone]
        hits = self.windows.setdefault(key, [])
        if len(hits) > limit - amount and hits[limit - amount].atime >= now - expiry:
            return False
        hit = _Hit(now)
        hits[:0] = [hit] * amount
        del hits[limit:]
        self._expiring.append((hit.expiry, key, expiry))
        return True

    def held(self) -> int:
        return sum(len(hits) for hits in self.windows.values())

    def __len__(self) -> int:
        return len(self.windows)


async def drive(storage: InProcessStorage, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    # user i drawn with weight 1/(i+1): a few users hit every second, most rarely
    cumulative = list(itertools.accumulate(1 / (i + 1) for i in range(args.pool)))
    for n in range(int(args.rate * args.seconds)):
        clock.now = n / args.rate
        user = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
        await storage.acquire_entry(f"validate/user_{user}", LIMIT, WINDOW)


class _Clock:
    now = 0.0

    def time(self) -> float:
        return self.now


clock = _Clock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=8500.0, help="checks a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated")
    parser.add_argument("--pool", type=int, default=20_000, help="distinct users")
    parser.add_argument("--objects", action="store_true", help="the old bookkeeping")
    args = parser.parse_args()
    storage = ObjectsPerHit() if args.objects else InProcessStorage()
    gc.collect()
    gc.freeze()  # as the server does after start-up: what is left to walk is the load's
    # The storage reads the fake clock in place of the time module.
    with mock.patch.object(limiter, "time", types.SimpleNamespace(time=clock.time)):
        asyncio.run(drive(storage, args))
    if isinstance(storage, ObjectsPerHit):
        hits: list[object] = [hit for window in storage.windows.values() for hit in window]
    else:
        hits = [hit for key in storage.held_keys() for hit in storage.hits_of(key)]
    tracked = len({id(hit) for hit in hits if gc.is_tracked(hit)})
    del hits
    started = time.perf_counter()
    gc.collect()
    full = time.perf_counter() - started
    print(
        f"{'objects per hit' if args.objects else 'floats, cut to the window'}: "
        f"{args.rate * args.seconds:,.0f} checks over {args.seconds:.0f} simulated s; "
        f"{len(storage):,} keys holding {held(storage):,} hits, {tracked:,} of them tracked "
        f"by the collector; a full collection then {full * 1000:.1f} ms"
    )


def held(storage: InProcessStorage) -> int:
    if isinstance(storage, ObjectsPerHit):
        return storage.held()
    return sum(len(storage.hits_of(key)) for key in storage.held_keys())


if __name__ == "__main__":
    main()
