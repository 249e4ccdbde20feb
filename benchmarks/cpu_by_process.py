"""CPU by kind of process, every second, while something else runs: which of the API, the
queue workers, PostgreSQL, Redis and the load generator a benchmark's cores go to.

    python benchmarks/cpu_by_process.py [--seconds 75] &
    peakshop bench flash-sale --scenario hyper --spawn

Each line: seconds since the start, then each kind's share of one core over the last second.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import time

import psutil

KINDS = (  # the first pattern found in a process's command line names its kind
    ("postgres", "postgres"),
    ("redis", "redis"),
    ("peakshop worker", "worker"),
    ("peakshop serve", "api"),
    ("peakshop bench", "bench"),
    ("multiprocessing", "bench"),  # the load generator's sender processes
)


def _kind(command: str) -> str | None:
    return next((kind for pattern, kind in KINDS if pattern in command), None)


def _snapshot() -> dict[tuple[str, int], float]:
    seconds: dict[tuple[str, int], float] = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        with contextlib.suppress(psutil.Error, TypeError):
            command = " ".join(process.info["cmdline"] or [])
            kind = None if "cpu_by_process" in command else _kind(command)  # not this one
            if kind is not None:
                times = process.info["cpu_times"]
                seconds[kind, process.pid] = times.user + times.system
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=75.0)
    args = parser.parse_args()
    started = time.monotonic()
    previous = _snapshot()
    while time.monotonic() - started < args.seconds:
        time.sleep(1.0)
        current = _snapshot()
        by_kind: dict[str, float] = collections.defaultdict(float)
        for key, used in current.items():
            # A process born during the second counts from zero.
            by_kind[key[0]] += used - previous.get(key, 0.0)
        previous = current
        shares = " ".join(f"{kind}={100 * used:4.0f}%" for kind, used in sorted(by_kind.items()))
        print(f"{time.monotonic() - started:5.1f} {shares}", flush=True)


if __name__ == "__main__":
    main()
