"""The whole measurement batch behind the README's performance tables, end to end (`make bench`).

Runs every step in turn, each writing its JSON to ``benchmarks/results/<step>.json`` and its
output to ``var/bench-logs/<step>.log``, then rewrites the README's tables from the JSON files
(``benchmarks/update_readme.py``). A step that fails is reported and the others still run.
Scaled-mode steps need PostgreSQL and Redis (``--postgres-url`` / ``--redis-url``, or
``BENCH_POSTGRES_URL`` / ``BENCH_REDIS_URL``) and are skipped, with the
reason, without them. The PostgreSQL database is seeded with ``--reset``: give one of its own.

    python benchmarks/run_all.py [--only STEP[,STEP]] [--skip STEP] [--readme-only] [--list]
        [--postgres-url URL] [--redis-url URL]

Steps may be named one by one or by group (validate, modes, flash, catalog, monitoring,
loadgen, report). Run it on an otherwise idle machine: it takes about an hour on 2 cores,
and anything else running is measured too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = Path("benchmarks/results")  # relative to ROOT: the commands recorded stay short
LOGS = ROOT / "var" / "bench-logs"
FLASH_DB = "var/flash.db"
CATALOG_DB = "var/catalog.db"
CATALOG_SEED = ("--sellers", "1000", "--products", "100000", "--orders", "1000000")

Command = list[str]


@dataclass(frozen=True, kw_only=True)
class Context:
    python: str
    postgres_url: str | None
    redis_url: str | None

    def peakshop(self, *args: str) -> Command:
        return [self.python, "-m", "peakshop", *args]

    def script(self, name: str, *args: str) -> Command:
        return [self.python, f"benchmarks/{name}", *args]


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str  # the result is benchmarks/results/<name>.json
    group: str
    commands: Callable[[Context], list[Command]]
    database: str = "sqlite"  # "sqlite:<file>" for a fresh file, "postgres": scaled mode
    fresh: bool = False  # delete the SQLite file (and its -wal, -shm) first
    prepare: str | None = None  # a preparation shared with other steps, run once
    needs: Callable[[], str | None] = field(default=lambda: None)  # a reason to skip, or None

    @property
    def result(self) -> Path:
        return RESULTS / f"{self.name}.json"

    @property
    def scaled(self) -> bool:
        return self.database == "postgres"


def _json(step: str) -> tuple[str, str]:
    return "--json", str(RESULTS / f"{step}.json")


def _flash(name: str, *args: str) -> Step:
    return Step(
        name=name,
        group="flash",
        database=f"sqlite:{FLASH_DB}",
        fresh=True,
        commands=lambda c: [
            c.peakshop("db", "upgrade"),
            c.peakshop("bench", "flash-sale", *args, "--spawn", *_json(name)),
        ],
    )


def _monitoring_script() -> str | None:
    if (HERE / "monitoring_overhead.py").is_file():
        return None
    return "benchmarks/monitoring_overhead.py does not exist (yet)"


STEPS: tuple[Step, ...] = (
    Step(
        name="validate",
        group="validate",
        commands=lambda c: [c.script("run_validate_suite.py", *_json("validate"))],
    ),
    Step(
        name="modes",
        group="modes",
        database="postgres",
        commands=lambda c: [
            c.script(
                "compare_modes.py",
                *("--postgres-url", c.postgres_url or "", "--redis-url", c.redis_url or ""),
                *_json("modes"),
            )
        ],
    ),
    _flash("flash_hyper_embedded", "--scenario", "hyper", "--compare-minimal"),
    _flash(
        "flash_hyper_open_embedded", "--scenario", "hyper", "--compare-minimal", "--rate", "1000"
    ),
    _flash("flash_single_unit_embedded", "--scenario", "single-unit"),
    _flash("flash_limited_embedded", "--scenario", "limited"),
    Step(
        name="flash_hyper_scaled",
        group="flash",
        database="postgres",
        commands=lambda c: [
            c.peakshop("db", "upgrade"),
            c.peakshop(
                "bench",
                "flash-sale",
                "--scenario",
                "hyper",
                "--spawn",
                "--compare-conventional",
                *_json("flash_hyper_scaled"),
            ),
        ],
    ),
    Step(
        name="catalog_scaled",
        group="catalog",
        database="postgres",
        prepare="catalog-postgres",
        commands=lambda c: [c.peakshop("bench", "catalog", "--spawn", *_json("catalog_scaled"))],
    ),
    Step(
        name="catalog_pages_postgres",
        group="catalog",
        database="postgres",
        prepare="catalog-postgres",
        commands=lambda c: [c.script("catalog_pages.py", *_json("catalog_pages_postgres"))],
    ),
    Step(
        name="catalog_embedded",
        group="catalog",
        database=f"sqlite:{CATALOG_DB}",
        prepare="catalog-sqlite",
        commands=lambda c: [
            c.peakshop(
                "bench", "catalog", "--spawn", "--compare-minimal", *_json("catalog_embedded")
            )
        ],
    ),
    Step(
        name="catalog_pages_sqlite",
        group="catalog",
        database=f"sqlite:{CATALOG_DB}",
        prepare="catalog-sqlite",
        commands=lambda c: [c.script("catalog_pages.py", *_json("catalog_pages_sqlite"))],
    ),
    Step(
        name="report_memory",
        group="report",
        commands=lambda c: [
            c.script(
                "report_memory.py",
                "--orders",
                "200000",
                "--orders",
                "1000000",
                "--naive",
                *_json("report_memory"),
            )
        ],
    ),
    Step(
        name="monitoring_overhead",
        group="monitoring",
        needs=_monitoring_script,
        # It writes benchmarks/results/monitoring_overhead.json itself.
        commands=lambda c: [c.script("monitoring_overhead.py")],
    ),
    Step(
        name="sender_accuracy",
        group="loadgen",
        commands=lambda c: [c.script("sender_accuracy.py", *_json("sender_accuracy"))],
    ),
)

# Run once, before the first step that needs them: the catalog data set (1M orders).
PREPARATIONS: dict[str, tuple[str, bool, Callable[[Context], list[Command]]]] = {
    "catalog-postgres": (
        "postgres",
        False,
        lambda c: [c.peakshop("db", "upgrade"), c.peakshop("seed", "--reset", *CATALOG_SEED)],
    ),
    "catalog-sqlite": (
        f"sqlite:{CATALOG_DB}",
        True,
        lambda c: [c.peakshop("db", "upgrade"), c.peakshop("seed", *CATALOG_SEED)],
    ),
}


def environment(database: str, context: Context) -> dict[str, str]:
    """The caller's environment without any PEAKSHOP_ variable (settings are strict, and a
    stray one would change what is measured), plus the step's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKSHOP_")}
    if database == "postgres":
        env["PEAKSHOP_DATABASE_URL"] = context.postgres_url or ""
        env["PEAKSHOP_REDIS_URL"] = context.redis_url or ""
    elif database.startswith("sqlite:"):
        env["PEAKSHOP_DATABASE_URL"] = f"sqlite+aiosqlite:///{database.removeprefix('sqlite:')}"
    return env


def select(steps: Sequence[Step], only: Sequence[str], skip: Sequence[str]) -> list[Step]:
    """The steps named (or whose group is named) by ``only`` (all when empty), minus ``skip``."""
    known = {s.name for s in steps} | {s.group for s in steps}
    unknown = sorted(set(only) - known) + sorted(set(skip) - known)
    if unknown:
        raise ValueError(
            f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(s.name for s in steps)}; "
            f"groups: {', '.join(sorted({s.group for s in steps}))}"
        )
    chosen = [s for s in steps if not only or s.name in only or s.group in only]
    return [s for s in chosen if s.name not in skip and s.group not in skip]


class Runner:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.prepared: dict[str, int] = {}  # preparation -> exit code

    def _fresh(self, database: str) -> None:
        path = ROOT / database.removeprefix("sqlite:")
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

    def _commands(
        self, commands: Sequence[Command], *, database: str, log: Path, secrets: Sequence[str]
    ) -> int:
        env = environment(database, self.context)
        with log.open("a") as out:
            for command in commands:
                shown = shlex.join(command)
                for secret in secrets:
                    shown = shown.replace(secret, "***")
                print(f"    $ {shown}", flush=True)
                out.write(f"$ {shown}\n")
                out.flush()
                code = subprocess.run(
                    command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
                ).returncode
                out.write(f"# exit code {code}\n")
                if code:
                    return code
        return 0

    def _secrets(self) -> list[str]:
        return [u for u in (self.context.postgres_url, self.context.redis_url) if u]

    def run(self, step: Step) -> tuple[str, str]:
        """(status, detail) of one step: ok, targets not met, failed, skipped."""
        if step.scaled and not (self.context.postgres_url and self.context.redis_url):
            return "skipped", "scaled mode: give --postgres-url and --redis-url"
        reason = step.needs()
        if reason is not None:
            return "skipped", reason
        log = LOGS / f"{step.name}.log"
        log.write_text("")
        if step.prepare is not None:
            if step.prepare not in self.prepared:
                database, fresh, commands = PREPARATIONS[step.prepare]
                print(f"  preparing {step.prepare} (log {log.relative_to(ROOT)})", flush=True)
                if fresh:
                    self._fresh(database)
                self.prepared[step.prepare] = self._commands(
                    commands(self.context), database=database, log=log, secrets=self._secrets()
                )
            if self.prepared[step.prepare]:
                return "failed", f"preparation {step.prepare} failed (see its log)"
        if step.fresh:
            self._fresh(step.database)
        result = ROOT / step.result
        before = result.stat().st_mtime_ns if result.exists() else None
        code = self._commands(
            step.commands(self.context), database=step.database, log=log, secrets=self._secrets()
        )
        written = result.exists() and result.stat().st_mtime_ns != before
        if code == 0 and written:
            return "ok", f"wrote {step.result}"
        if code == 1 and written:
            return "targets not met", f"wrote {step.result}; exit code 1"
        if code == 0:
            return "failed", f"exit code 0 but {step.result} was not written"
        return "failed", f"exit code {code}" + ("" if written else ", no result written")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="STEP[,STEP] or a group")
    parser.add_argument("--skip", action="append", default=[], help="STEP[,STEP] or a group")
    parser.add_argument(
        "--readme-only", action="store_true", help="only rewrite the README from the JSON files"
    )
    parser.add_argument("--list", action="store_true", help="list the steps and stop")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"))
    args = parser.parse_args(argv)

    def names(values: Sequence[str]) -> list[str]:
        return [n.strip() for value in values for n in value.split(",") if n.strip()]

    try:
        steps = select(STEPS, names(args.only), names(args.skip))
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        for step in STEPS:
            mode = "scaled" if step.scaled else "embedded"
            print(f"{step.name:28} {step.group:11} {mode:9} -> {step.result}")
        return 0
    failed = False
    if not args.readme_only:
        context = Context(
            python=sys.executable, postgres_url=args.postgres_url, redis_url=args.redis_url
        )
        runner = Runner(context)
        LOGS.mkdir(parents=True, exist_ok=True)
        outcomes: list[tuple[Step, str, str, float]] = []
        for number, step in enumerate(steps, 1):
            print(f"[{number}/{len(steps)}] {step.name}", flush=True)
            started = time.monotonic()
            try:
                status, detail = runner.run(step)
            except OSError as exc:
                status, detail = "failed", f"{exc.__class__.__name__}: {exc}"
            seconds = time.monotonic() - started
            outcomes.append((step, status, detail, seconds))
            print(f"    {status}: {detail} ({seconds:.0f} s)", flush=True)
            failed |= status in ("failed", "targets not met")
        print("\nsummary:")
        for step, status, detail, seconds in outcomes:
            print(f"  {step.name:28} {status:16} {seconds:6.0f} s  {detail}")
        print(f"logs in {LOGS.relative_to(ROOT)}/")
    sys.path.insert(0, str(HERE))  # imported as benchmarks.run_all too (the tests)
    from update_readme import update

    changed = update(ROOT / "README.md", ROOT / RESULTS)
    print(f"README.md: {'tables rewritten' if changed else 'tables unchanged'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
