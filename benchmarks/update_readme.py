"""Rewrite the README's performance tables from the JSON results of ``benchmarks/results/``.

Everything between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in README.md is
replaced (the markers are added at the end of the "## Performance" section when missing):
one table per area (target | measured | limit | verdict | when), built from each result's
``targets`` list, or from small adapters for the results that have none (modes, report memory,
catalog pages); under them, the file, date, command and commit of each result, and the
machines they ran on. Numbers are shown as the JSON holds them (4 significant digits, more
when a value would otherwise print equal to its limit); an expected result that is missing is
"not measured". The output depends on the JSON files alone: running it twice changes nothing.

    python benchmarks/update_readme.py [--results benchmarks/results] [--readme README.md]
        [--check]
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
SECTION = "## Performance"
MiB = 2**20
# validate.json's targets about the load generator itself: shown with the load generator.
LOADGEN_TARGETS = ("bench_closed_rps", "bench_open_lag")

Target = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Source:
    file: str
    label: str = ""
    only: tuple[str, ...] | None = None  # these targets of the file, or all
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Area:
    title: str
    sources: tuple[Source, ...]


AREAS: tuple[Area, ...] = (
    Area(
        title="Coupon validation (embedded)",
        sources=(Source(file="validate.json", exclude=LOADGEN_TARGETS),),
    ),
    Area(title="Modes", sources=(Source(file="modes.json"),)),
    Area(
        title="Flash sales",
        sources=(
            Source(file="flash_hyper_embedded.json", label="hyper, embedded, closed loop"),
            Source(file="flash_hyper_open_embedded.json", label="hyper, embedded, open loop"),
            Source(file="flash_single_unit_embedded.json", label="single-unit, embedded"),
            Source(file="flash_limited_embedded.json", label="limited, embedded"),
            Source(file="flash_hyper_scaled.json", label="hyper, scaled"),
        ),
    ),
    Area(
        title="Catalog",
        sources=(
            Source(file="catalog_embedded.json", label="embedded (SQLite)"),
            Source(file="catalog_scaled.json", label="scaled (PostgreSQL + Redis)"),
            Source(file="catalog_pages_sqlite.json", label="SQLite"),
            Source(file="catalog_pages_postgres.json", label="PostgreSQL"),
        ),
    ),
    Area(title="Monitoring", sources=(Source(file="monitoring_overhead.json"),)),
    Area(
        title="Load generator",
        sources=(
            Source(file="sender_accuracy.json"),
            Source(file="validate.json", label="validate suite", only=LOADGEN_TARGETS),
        ),
    ),
    Area(title="Report memory", sources=(Source(file="report_memory.json"),)),
)


# --- adapters: results without a "targets" list -------------------------------------------


def _constants(script: Path, names: Sequence[str]) -> dict[str, Any]:
    """Module-level constants of a benchmark script, read without importing it."""
    found: dict[str, Any] = {}
    try:
        tree = ast.parse(script.read_text())
    except (OSError, SyntaxError):
        return found
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in names:
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return found


def _target(
    name: str,
    description: str,
    measured: float | None,
    *,
    unit: str,
    limit: float | None = None,
    comparison: str = "<=",
    note: str = "",
) -> Target:
    passed = None
    if limit is not None:
        passed = measured is not None and (
            measured <= limit if comparison == "<=" else measured >= limit
        )
    return {
        "name": name,
        "description": description,
        "measured": measured,
        "limit": limit,
        "comparison": comparison,
        "unit": unit,
        "passed": passed,
        "note": note,
    }


def modes_targets(doc: Mapping[str, Any]) -> list[Target]:
    medians = doc.get("medians_rps") or {}
    rounds = len((doc.get("runs") or {}).get("embedded") or [])
    note = ""
    if "embedded" in medians and "scaled" in medians:
        note = (
            f"medians {number(medians['scaled'])} / {number(medians['embedded'])} req/s "
            f"over {rounds} round(s)"
        )
    target = _target(
        "scaled_to_embedded",
        "coupon validation, closed loop: throughput scaled (PostgreSQL + Redis) / embedded "
        "(SQLite)",
        doc.get("ratio_scaled_to_embedded"),
        unit="x",
        limit=doc.get("target"),
        comparison=">=",
        note=note,
    )
    if "passed" in doc:
        target["passed"] = bool(doc["passed"])
    return [target]


def report_memory_targets(doc: Mapping[str, Any]) -> list[Target]:
    out = []
    for result in doc.get("results") or []:
        rows, method = result.get("rows"), result.get("method", "?")
        peak = result.get("traced_peak_bytes")
        notes = []
        if result.get("file_bytes"):
            notes.append(f"file {number(result['file_bytes'] / MiB)} MiB")
        if result.get("seconds") is not None:
            notes.append(f"{number(result['seconds'])} s under tracemalloc")
        out.append(
            _target(
                f"{method}_{rows}",
                f"sales report over {rows:,} orders, {method}: peak of traced allocations",
                None if peak is None else peak / MiB,
                unit="MiB",
                note="; ".join(notes),
            )
        )
    return out


def catalog_pages_targets(doc: Mapping[str, Any]) -> list[Target]:
    limits = _constants(HERE / "catalog_pages.py", ("MAX_CURSOR_RATIO", "MAX_ANALYTICS_MS"))
    results: Mapping[str, Any] = doc.get("results") or {}
    out = []
    for key in sorted(k for k in results if k.startswith("cursor_")):
        value = results[key]
        sort = key.removeprefix("cursor_")
        out.append(
            _target(
                f"{key}_ratio",
                f"cursor pages, sort {sort}: median of page 1,000 / page 1",
                value.get("ratio"),
                unit="x",
                limit=limits.get("MAX_CURSOR_RATIO"),
                note=f"{number(value['page_1000']['median_ms'])} / "
                f"{number(value['page_1']['median_ms'])} ms",
            )
        )
    for key in sorted(k for k in results if k.startswith("offset_")):
        pages = results[key]
        deep = pages.get("page_1000")
        if deep is None:
            continue
        out.append(
            _target(
                f"{key}_page_1000",
                f"offset page 1,000 with its total, sort {key.removeprefix('offset_')}: median",
                deep.get("median_ms"),
                unit="ms",
                note=f"page 1: {number(pages['page_1']['median_ms'])} ms"
                if "page_1" in pages
                else "",
            )
        )
    for key in sorted(k for k in results if k.startswith("analytics_")):
        timing = results[key]
        out.append(
            _target(
                key,
                f"analytics, {key.removeprefix('analytics_').replace('_', ' ')} over a year: P95",
                timing.get("p95_ms"),
                unit="ms",
                limit=limits.get("MAX_ANALYTICS_MS"),
                note=f"median {number(timing['median_ms'])} ms",
            )
        )
    return out


def targets_of(doc: Mapping[str, Any]) -> list[Target]:
    """The result's own targets, or those an adapter reads from its structure."""
    if isinstance(doc.get("targets"), list):
        return list(doc["targets"])
    adapter: Callable[[Mapping[str, Any]], list[Target]] | None = None
    if doc.get("scenario") == "validate-modes":
        adapter = modes_targets
    elif doc.get("scenario") == "report-memory":
        adapter = report_memory_targets
    elif isinstance(doc.get("results"), Mapping) and any(
        k.startswith("cursor_") for k in doc["results"]
    ):
        adapter = catalog_pages_targets
    return adapter(doc) if adapter is not None else []


# --- formatting ---------------------------------------------------------------------------


def number(value: float, *, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits (all of its integer digits), no trailing
    zeros; thousands separated."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}" if not math.isfinite(value) else "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    text = f"{value:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _with_unit(text: str, unit: str) -> str:
    if unit == "x":
        return f"{text}\N{MULTIPLICATION SIGN}"
    if unit == "%":
        return f"{text}%"
    return f"{text} {unit}" if unit else text


def figures(target: Mapping[str, Any]) -> tuple[str, str]:
    """(measured, limit) as shown: the limit with its comparison."""
    raw_measured, raw_limit = target.get("measured"), target.get("limit")
    measured = None if raw_measured is None else float(raw_measured)
    limit = None if raw_limit is None else float(raw_limit)
    unit = str(target.get("unit") or "")
    digits = 4

    def show(value: float | None) -> str | None:
        return None if value is None else number(value, digits=digits)

    shown, bound = show(measured), show(limit)
    # Never print a value equal to its limit when it is not: show more digits.
    while shown is not None and shown == bound and measured != limit and digits < 12:
        digits += 2
        shown, bound = show(measured), show(limit)
    measured_text = "not measured" if shown is None else _with_unit(shown, unit)
    if bound is None:
        return measured_text, "—"
    sign = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}.get(
        str(target.get("comparison", "")), str(target.get("comparison", ""))
    )
    return measured_text, f"{sign} {_with_unit(bound, unit)}"


def verdict(target: Mapping[str, Any]) -> str:
    passed = target.get("passed")
    if passed is None:
        return "—"
    if passed:
        return "pass"
    if target.get("from_valid_runs") is False:
        return "**FAIL** (invalid run)"
    return "**FAIL**"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def clean_command(command: str) -> str:
    """Passwords of URLs hidden; an absolute path to the Python interpreter shortened."""
    command = _PASSWORD.sub(r"\1***@", command)
    first, _, rest = command.partition(" ")
    if "/" in first and re.fullmatch(r"python[0-9.]*", first.rsplit("/", 1)[1]):
        first = "python"
    return f"{first} {rest}".strip()


def started(doc: Mapping[str, Any]) -> str | None:
    for key in ("started_at", "measured_at", "finished_at"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _day(doc: Mapping[str, Any] | None) -> str:
    when = started(doc) if doc is not None else None
    return when[:10] if when else "not recorded"


def machine_key(machine: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        machine.get("cpu_model"),
        machine.get("logical_cores"),
        machine.get("physical_cores"),
        machine.get("memory_total_bytes"),
        machine.get("python"),
        machine.get("python_implementation"),
        machine.get("os"),
    )


def describe_machine(machine: Mapping[str, Any]) -> str:
    parts = [str(machine.get("cpu_model") or "CPU model unknown")]
    logical, physical = machine.get("logical_cores"), machine.get("physical_cores")
    if logical is not None:
        parts.append(f"{logical} logical cores" + (f" ({physical} physical)" if physical else ""))
    if machine.get("memory_total_bytes"):
        parts.append(f"{number(machine['memory_total_bytes'] / 2**30, digits=3)} GiB memory")
    if machine.get("python"):
        implementation = machine.get("python_implementation") or "Python"
        parts.append(f"Python {machine['python']} ({implementation})")
    if machine.get("os"):
        parts.append(str(machine["os"]))
    packages = machine.get("packages") or {}
    listed = [f"{name} {packages[name]}" for name in sorted(packages) if packages[name]]
    if listed:
        parts.append(", ".join(listed))
    return "; ".join(parts)


# --- rendering ----------------------------------------------------------------------------


def load_results(folder: Path) -> dict[str, Any]:
    """Every ``*.json`` of ``folder`` by file name; an unreadable one maps to its error."""
    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            out[path.name] = ValueError(f"unreadable: {exc.__class__.__name__}")
    return out


def _rows(source: Source, doc: Any) -> list[str]:
    name = f"`{source.file}`"
    prefix = f"{source.label}: " if source.label else ""
    if doc is None:
        return [f"| {cell(prefix + name)} | not measured | — | — | — |"]
    if isinstance(doc, Exception):
        return [f"| {cell(prefix + name)} | {cell(str(doc))} | — | — | — |"]
    rows = []
    when = _day(doc)
    for target in targets_of(doc):
        if source.only is not None and target.get("name") not in source.only:
            continue
        if target.get("name") in source.exclude:
            continue
        text = str(target.get("description") or target.get("name") or "?")
        if target.get("note"):
            text += f" — {target['note']}"
        measured, limit = figures(target)
        rows.append(
            f"| {cell(prefix + text)} | {cell(measured)} | {cell(limit)} | "
            f"{verdict(target)} | {when} |"
        )
    if not rows:
        rows.append(f"| {cell(prefix + name)} | no targets in the file | — | — | {when} |")
    return rows


def render(results: Mapping[str, Any]) -> str:
    """The text between the markers (without them)."""
    lines = [
        "<!-- Written by benchmarks/update_readme.py (make bench) from benchmarks/results/*.json:"
        " edit those, not this. -->",
        "",
    ]
    used: list[str] = []
    areas = list(AREAS)
    known = {source.file for area in AREAS for source in area.sources}
    others = tuple(
        Source(file=name)
        for name, doc in sorted(results.items())
        if name not in known and (isinstance(doc, Exception) or targets_of(doc))
    )
    if others:
        areas.append(Area(title="Other results", sources=others))
    for area in areas:
        lines += [f"**{area.title}**", ""]
        lines += ["| target | measured | limit | verdict | when |", "|---|---|---|---|---|"]
        for source in area.sources:
            doc = results.get(source.file)
            lines += _rows(source, doc)
            if doc is not None and source.file not in used:
                used.append(source.file)
        lines.append("")
    lines += _sources(results, used)
    return "\n".join(lines).rstrip("\n") + "\n"


def _sources(results: Mapping[str, Any], used: Sequence[str]) -> list[str]:
    machines: dict[tuple[Any, ...], tuple[str, Mapping[str, Any]]] = {}
    lines = [
        'Where each figure comes from ("when" above is the run\'s start, UTC; each file also '
        "holds every run, the versions and the exact options):",
        "",
        "| result | started (UTC) | command | commit | machine |",
        "|---|---|---|---|---|",
    ]
    for name in used:
        doc = results[name]
        if isinstance(doc, Exception):
            continue
        machine = doc.get("machine") or {}
        label = "not recorded"
        if machine:
            key = machine_key(machine)
            if key not in machines:
                machines[key] = (chr(ord("A") + len(machines)), machine)
            label = machines[key][0]
        when = started(doc)
        when_text = when.replace("T", " ")[:16] if when else "not recorded"
        command = clean_command(str(doc.get("command") or ""))
        source = machine.get("source") or {}
        commit = (source.get("commit") or "")[:10]
        modified = source.get("modified_files")
        if commit and modified:
            commit += f" + {len(modified)} changed file(s)"
        lines.append(
            f"| `benchmarks/results/{name}` | {when_text} | "
            f"{'`' + cell(command) + '`' if command else 'not recorded'} | "
            f"{commit or 'not recorded'} | {label} |"
        )
    lines.append("")
    if machines:
        lines += ["Machines:", ""]
        for label, machine in machines.values():
            lines.append(f"- **{label}**: {cell(describe_machine(machine))}")
    return lines


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text between the markers replaced by ``block``; the markers are
    added at the end of the Performance section (or of the file) when missing."""
    # Markers count on lines of their own only (prose may name them).
    begins = list(re.finditer(rf"^{re.escape(BEGIN)}[ \t]*$", readme, flags=re.MULTILINE))
    ends = list(re.finditer(rf"^{re.escape(END)}[ \t]*$", readme, flags=re.MULTILINE))
    if len(begins) > 1 or len(ends) > 1:
        raise ValueError(f"README: {BEGIN} and {END} must appear once each")
    if begins and ends and ends[0].start() > begins[0].end():
        return readme[: begins[0].end()] + "\n" + block + readme[ends[0].start() :]
    if begins or ends:
        raise ValueError(f"README: {BEGIN} and {END} must both be present, in that order")
    wrapped = f"{BEGIN}\n{block}{END}\n"
    section = re.search(rf"^{re.escape(SECTION)}\s*$", readme, flags=re.MULTILINE)
    if section is None:
        return readme.rstrip("\n") + "\n\n" + wrapped
    following = re.search(r"^## ", readme[section.end() :], flags=re.MULTILINE)
    if following is None:
        return readme.rstrip("\n") + "\n\n" + wrapped
    cut = section.end() + following.start()
    return readme[:cut].rstrip("\n") + "\n\n" + wrapped + "\n" + readme[cut:]


def update(readme_path: Path, results_dir: Path) -> bool:
    """Rewrite the README's block; True when the file changed."""
    before = readme_path.read_text()
    after = replace_block(before, render(load_results(results_dir)))
    if after != before:
        readme_path.write_text(after)
    return after != before


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the README is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        text = args.readme.read_text()
        stale = replace_block(text, render(load_results(args.results))) != text
        print(f"{args.readme}: {'stale' if stale else 'up to date'}")
        return 1 if stale else 0
    changed = update(args.readme, args.results)
    print(f"{args.readme}: {'rewritten' if changed else 'unchanged'} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
