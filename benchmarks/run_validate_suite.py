"""Measure every coupon-validation target end to end, on data this script generates.

1. ``peakshop seed --reset`` the default data set (1M users, 5K coupons, 3K usage records)
   into its own SQLite file (``var/bench.db`` unless --database-url says otherwise);
2. ``peakshop bench validate --spawn --suite``: peakshop and the minimal app of this folder
   are spawned on free ports and measured in the same session, alternating;
3. the JSON report (runs, targets, machine, date) goes to --json.

    python benchmarks/run_validate_suite.py [--procs 1] [--json benchmarks/results/validate.json]

Run it on an otherwise idle machine: the load generator shares the cores with the server,
and anything else running is measured too (each run reports the CPU used by others).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _run(command: list[str], env: dict[str, str]) -> int:
    print("$ " + shlex.join(command), flush=True)
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default=f"sqlite+aiosqlite:///{ROOT / 'var' / 'bench.db'}"
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "validate.json")
    parser.add_argument("--procs", type=int, default=1, help="sender processes")
    parser.add_argument("--rounds", type=int, default=3, help="sustained closed-loop rounds")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="seconds to wait before each run for the machine to be idle",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep a database that already holds data"
    )
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKSHOP_")}
    env["PEAKSHOP_DATABASE_URL"] = args.database_url
    if args.database_url.startswith("sqlite+aiosqlite:///"):
        Path(args.database_url.removeprefix("sqlite+aiosqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    peakshop = [sys.executable, "-m", "peakshop"]
    seed = [*peakshop, "seed", "--if-empty" if args.reuse else "--reset"]
    if code := _run(seed, env):
        return code
    return _run(
        [
            *peakshop,
            *("bench", "validate", "--spawn", "--suite"),
            *("--minimal-app", str(HERE / "minimal_app.py")),
            *("--procs", str(args.procs), "--rounds", str(args.rounds)),
            *("--wait-quiet", str(args.wait_quiet), "--json", str(args.json)),
        ],
        env,
    )


if __name__ == "__main__":
    sys.exit(main())
