"""Validate throughput, scaled mode (PostgreSQL + Redis) against embedded (SQLite), same session.

Seeds the default data set (1M users, 5K coupons) into both, then alternates closed-loop runs
of ``peakshop bench validate --spawn`` between the two modes (one server process each, the
same request mix) and reports the median ratio scaled / embedded. Alternating spreads what
else happens on the machine over both modes alike.

    python benchmarks/compare_modes.py --postgres-url postgresql+asyncpg://… --redis-url redis://…
        [--rounds 3] [--duration 10] [--json benchmarks/results/modes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET_RATIO = 0.70  # the coupon-validation issue: scaled >= 70% of embedded


def _run(command: list[str], env: dict[str, str]) -> None:
    print("$ " + shlex.join(command), flush=True)
    subprocess.run(command, env=env, cwd=ROOT, check=True)


def _env(database_url: str, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKSHOP_")}
    env["PEAKSHOP_DATABASE_URL"] = database_url
    if redis_url:
        env["PEAKSHOP_REDIS_URL"] = redis_url
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-url", default=f"sqlite+aiosqlite:///{ROOT / 'var' / 'bench.db'}")
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "modes.json")
    parser.add_argument("--reuse", action="store_true", help="keep data already seeded")
    args = parser.parse_args()

    (ROOT / "var").mkdir(exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    modes = {
        "embedded": _env(args.sqlite_url, None),
        "scaled": _env(args.postgres_url, args.redis_url),
    }
    peakshop = [sys.executable, "-m", "peakshop"]
    for env in modes.values():
        _run([*peakshop, "db", "upgrade"], env)
        _run([*peakshop, "seed", "--if-empty" if args.reuse else "--reset"], env)

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(1, args.rounds + 1):
            for name, env in modes.items():
                out = Path(scratch) / f"{name}-{round_number}.json"
                command = [*peakshop, "bench", "validate", "--spawn"]
                command += ["--duration", str(args.duration), "--json", str(out)]
                # Exit code 1 only means a target of the single run failed; the run is read.
                subprocess.run(command, env=env, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
                result = json.loads(out.read_text())
                run = result["runs"][0]
                run["machine"] = result["machine"]
                runs[name].append(run)
                print(
                    f"round {round_number} {name:9s} {run['throughput_rps']:8,.0f} req/s "
                    f"p99 {run['latency_ms']['p99']:.2f} ms valid={run['valid']}",
                    flush=True,
                )

    medians = {
        name: statistics.median(r["throughput_rps"] for r in mode_runs)
        for name, mode_runs in runs.items()
    }
    ratio = medians["scaled"] / medians["embedded"]
    valid = all(r["valid"] for mode_runs in runs.values() for r in mode_runs)
    passed = valid and ratio >= TARGET_RATIO
    print(
        f"median embedded {medians['embedded']:,.0f} req/s, scaled {medians['scaled']:,.0f} req/s: "
        f"ratio {ratio:.3f} (target >= {TARGET_RATIO}) {'pass' if passed else 'FAIL'}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "scenario": "validate-modes",
                "command": shlex.join([sys.executable, *sys.argv]),
                "started_at": started_at,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": runs["embedded"][0]["machine"],
                "medians_rps": medians,
                "ratio_scaled_to_embedded": ratio,
                "target": TARGET_RATIO,
                "passed": passed,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
