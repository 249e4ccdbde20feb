"""benchmarks/update_readme.py: the README's performance tables from the JSON results, and
run_all.py's choice of steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks import run_all, update_readme
from benchmarks.update_readme import BEGIN, END

X = "\N{MULTIPLICATION SIGN}"

MACHINE = {
    "cpu_model": "Test CPU 9000",
    "logical_cores": 2,
    "physical_cores": 2,
    "memory_total_bytes": 8 * 2**30,
    "memory_available_bytes": 123,  # varies between runs: not part of the machine's identity
    "python": "3.11.7",
    "python_implementation": "CPython",
    "os": "Linux-test",
    "packages": {"litestar": "2.25.0", "granian": None},
    "source": {"commit": "0123456789abcdef", "modified_files": []},
}

README = f"""# shop

## Performance

How it is measured (kept as is).

{BEGIN}
old hand-written figures
{END}

Text after the block.

## Layout

nothing
"""


def _write(folder: Path, name: str, doc: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(doc))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    _write(
        folder,
        "validate.json",
        {
            "scenario": "validate",
            "command": "peakshop bench validate --spawn --suite",
            "started_at": "2026-11-24T20:50:04+00:00",
            "machine": MACHINE,
            "targets": [
                {
                    "name": "reference_throughput",
                    "description": "reference run throughput (median)",
                    "measured": 4276.087395768873,
                    "limit": 3300.0,
                    "comparison": ">=",
                    "unit": "req/s",
                    "passed": True,
                    "note": "median of 3 runs",
                },
                {
                    "name": "reference_p95",
                    "description": "reference run P95 | median",
                    "measured": 45.0001,
                    "limit": 45.0,
                    "comparison": "<=",
                    "unit": "ms",
                    "passed": False,
                    "note": "",
                },
                {
                    "name": "bench_open_lag",
                    "description": "bench open loop: send lag P99",
                    "measured": None,
                    "limit": 5.0,
                    "comparison": "<=",
                    "unit": "ms",
                    "passed": False,
                    "from_valid_runs": False,
                    "note": "",
                },
            ],
        },
    )
    _write(  # no targets list: the modes adapter
        folder,
        "modes.json",
        {
            "scenario": "validate-modes",
            "command": "/usr/bin/python3.11 benchmarks/compare_modes.py --postgres-url "
            "postgresql+asyncpg://postgres:hunter2@db:5432/bench --redis-url redis://r:6379/0",
            "machine": {**MACHINE, "memory_available_bytes": 456},
            "medians_rps": {"embedded": 5214.4, "scaled": 4872.65},
            "ratio_scaled_to_embedded": 0.9344604828801328,
            "target": 0.7,
            "passed": True,
            "runs": {"embedded": [{}, {}, {}], "scaled": [{}, {}, {}]},
        },
    )
    _write(  # no targets list: the report-memory adapter, another machine
        folder,
        "report_memory.json",
        {
            "scenario": "report-memory",
            "command": "python benchmarks/report_memory.py --orders 200000",
            "measured_at": "2026-11-25T10:00:00+00:00",
            "machine": {**MACHINE, "cpu_model": "Other CPU"},
            "results": [
                {
                    "method": "streamed",
                    "rows": 200000,
                    "file_bytes": 17712869,
                    "traced_peak_bytes": 2884703,
                    "seconds": 16.283,
                }
            ],
        },
    )
    _write(  # no targets list: the catalog-pages adapter
        folder,
        "catalog_pages_sqlite.json",
        {
            "command": "python benchmarks/catalog_pages.py --json x.json",
            "machine": MACHINE,
            "measured_at": "2026-11-26T00:00:00+00:00",
            "results": {
                "cursor_newest": {
                    "page_1": {"median_ms": 1.0, "p95_ms": 2.0, "max_ms": 3.0},
                    "page_1000": {"median_ms": 1.1, "p95_ms": 2.0, "max_ms": 3.0},
                    "ratio": 1.1,
                },
                "analytics_sales_day": {"median_ms": 10.0, "p95_ms": 60.0, "max_ms": 70.0},
            },
        },
    )
    return folder


def _block(text: str) -> str:
    return text[text.index(BEGIN) : text.index(END)]


def test_renders_the_tables_between_the_markers(results: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert update_readme.update(readme, results)
    text = readme.read_text()
    assert "old hand-written figures" not in text
    assert text.startswith("# shop\n\n## Performance\n\nHow it is measured (kept as is).\n")
    assert text.endswith(f"{END}\n\nText after the block.\n\n## Layout\n\nnothing\n")
    block = _block(text)
    assert (
        "| reference run throughput (median) — median of 3 runs | 4,276 req/s | ≥ 3,300 req/s "
        "| pass | 2026-11-24 |" in block
    )
    # A value that would print equal to its limit gets more digits; pipes are escaped.
    assert "| reference run P95 \\| median | 45.0001 ms | ≤ 45 ms | **FAIL** | 2026-11-24 |" in (
        block
    )
    # validate.json's load-generator targets are listed with the load generator.
    loadgen = block[block.index("**Load generator**") :]
    assert (
        "| validate suite: bench open loop: send lag P99 | not measured | ≤ 5 ms "
        "| **FAIL** (invalid run) | 2026-11-24 |" in loadgen
    )
    assert "bench open loop" not in block[: block.index("**Load generator**")]


def test_adapters_for_results_without_targets(results: Path) -> None:
    block = update_readme.render(update_readme.load_results(results))
    assert f"| 0.9345{X} | ≥ 0.7{X} | pass | not recorded |" in block
    assert "medians 4,873 / 5,214 req/s over 3 round(s)" in block
    assert "sales report over 200,000 orders, streamed: peak of traced allocations" in block
    assert "| 2.751 MiB | — | — | 2026-11-25 |" in block
    assert "cursor pages, sort newest: median of page 1,000 / page 1 — 1.1 / 1 ms" in block
    assert f"| 1.1{X} | ≤ 1.2{X} | pass | 2026-11-26 |" in block  # limit read from catalog_pages.py
    assert "| 60 ms | ≤ 50 ms | **FAIL** | 2026-11-26 |" in block


def test_missing_results_are_not_measured(results: Path) -> None:
    block = update_readme.render(update_readme.load_results(results))
    assert "| hyper, scaled: `flash_hyper_scaled.json` | not measured | — | — | — |" in block
    assert "| `monitoring_overhead.json` | not measured | — | — | — |" in block
    assert "| `sender_accuracy.json` | not measured | — | — | — |" in block


def test_sources_machines_and_hidden_passwords(results: Path) -> None:
    block = update_readme.render(update_readme.load_results(results))
    assert "hunter2" not in block
    assert (
        "`python benchmarks/compare_modes.py --postgres-url "
        "postgresql+asyncpg://postgres:***@db:5432/bench" in block
    )
    assert "| `benchmarks/results/validate.json` | 2026-11-24 20:50 |" in block
    assert "| 0123456789 | A |" in block
    # Two machines: the one of validate/modes/catalog pages, and the report's.
    assert "- **A**: Test CPU 9000; 2 logical cores (2 physical); 8 GiB memory;" in block
    assert "Python 3.11.7 (CPython); Linux-test; litestar 2.25.0" in block
    assert "- **B**: Other CPU;" in block
    assert "- **C**" not in block


def test_idempotent(results: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert update_readme.update(readme, results)
    once = readme.read_text()
    assert not update_readme.update(readme, results)
    assert readme.read_text() == once
    assert update_readme.main(["--results", str(results), "--readme", str(readme), "--check"]) == 0


def test_markers_added_to_the_performance_section(results: Path) -> None:
    text = "# shop\n\n## Performance\n\nProse.\n\n## Layout\n\nx\n"
    block = update_readme.render(update_readme.load_results(results))
    out = update_readme.replace_block(text, block)
    assert out.startswith("# shop\n\n## Performance\n\nProse.\n\n" + BEGIN + "\n")
    assert out.endswith(f"{END}\n\n## Layout\n\nx\n")
    assert update_readme.replace_block(out, block) == out
    with pytest.raises(ValueError, match="both"):
        update_readme.replace_block(f"{END}\n{BEGIN}\n", block)
    with pytest.raises(ValueError, match="once each"):
        update_readme.replace_block(f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n", block)


def test_markers_named_in_prose_are_not_markers(results: Path) -> None:
    text = f"Prose names `{BEGIN}` and `{END}`.\n\n{BEGIN}\nold\n{END}\n"
    out = update_readme.replace_block(text, "new\n")
    assert out == f"Prose names `{BEGIN}` and `{END}`.\n\n{BEGIN}\nnew\n{END}\n"


def test_no_results_at_all(tmp_path: Path) -> None:
    block = update_readme.render(update_readme.load_results(tmp_path))
    assert block.count("| not measured |") == sum(len(a.sources) for a in update_readme.AREAS)
    assert "Machines:" not in block


def test_unknown_results_with_targets_are_listed(results: Path) -> None:
    _write(
        results,
        "extra.json",
        {
            "started_at": "2026-12-01T00:00:00+00:00",
            "targets": [
                {"name": "t", "description": "a new target", "measured": 3, "limit": 5,
                 "comparison": "<=", "unit": "s", "passed": True, "note": ""}
            ],
        },
    )  # fmt: skip
    (results / "broken.json").write_text("{not json")
    block = update_readme.render(update_readme.load_results(results))
    assert "**Other results**" in block
    assert "| a new target | 3 s | ≤ 5 s | pass | 2026-12-01 |" in block
    assert "| `broken.json` | unreadable: JSONDecodeError | — | — | — |" in block


@pytest.mark.parametrize(
    ("value", "shown"),
    [(4276.087, "4,276"), (35.455001, "35.46"), (0.8598018, "0.8598"), (0.0, "0"), (2.0, "2"),
     (1_000_000.4, "1,000,000"), (0.00012345, "0.0001234")],
)  # fmt: skip
def test_number(value: float, shown: str) -> None:
    assert update_readme.number(value) == shown


def test_run_all_selects_steps_and_groups() -> None:
    names = [s.name for s in run_all.select(run_all.STEPS, ["flash", "validate"], [])]
    assert names[0] == "validate"
    assert set(names[1:]) == {s.name for s in run_all.STEPS if s.group == "flash"}
    skipped = run_all.select(run_all.STEPS, [], ["catalog", "modes"])
    assert {s.group for s in skipped} == {s.group for s in run_all.STEPS} - {"catalog", "modes"}
    with pytest.raises(ValueError, match="unknown step"):
        run_all.select(run_all.STEPS, ["nope"], [])
    env = run_all.environment(
        "postgres", run_all.Context(python="python", postgres_url="postgresql+asyncpg://x/db",
                                    redis_url="redis://r/0"),
    )  # fmt: skip
    assert env["PEAKSHOP_DATABASE_URL"] == "postgresql+asyncpg://x/db"
    assert not {k for k in env if k.startswith("PEAKSHOP_")} - {
        "PEAKSHOP_DATABASE_URL",
        "PEAKSHOP_REDIS_URL",
    }


def test_scaled_steps_are_skipped_without_servers() -> None:
    runner = run_all.Runner(run_all.Context(python="python", postgres_url=None, redis_url=None))
    modes = next(s for s in run_all.STEPS if s.name == "modes")
    status, detail = runner.run(modes)
    assert status == "skipped"
    assert "--postgres-url" in detail
