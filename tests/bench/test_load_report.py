"""The HTML report (parsed back), its size, ``bench compare`` and the SLO files."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from peakshop.bench import compare, html_report, report
from peakshop.bench import slo as slo_mod
from peakshop.bench.cli import app
from tests.bench import load_helpers


class _Page(HTMLParser):
    """The report's chart divs, scripts (external ones too) and data document."""

    def __init__(self) -> None:
        super().__init__()
        self.chart_divs: list[str] = []
        self.external: list[str] = []
        self.data: dict[str, Any] | None = None
        self.scripts = 0
        self.text: list[str] = []
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "div" and (attributes.get("id") or "").startswith("chart-"):
            self.chart_divs.append(str(attributes["id"]))
        if tag == "script":
            self.scripts += 1
            self._in_data = attributes.get("id") == "bench-data"
        for name in ("src", "href"):
            if attributes.get(name):
                self.external.append(str(attributes[name]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data = json.loads(data)
        else:
            self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_helpers.document(load_helpers.outcome(load_helpers.records()))


def test_the_report_renders_the_runs_numbers(doc: dict[str, Any]) -> None:
    page = _parse(html_report.render(doc))
    assert page.data is not None and page.external == [] and page.scripts == 3
    charts = {chart["id"]: chart for chart in page.data["charts"]}
    assert set(charts) == {"throughput", "latency", "errors", "memory"}
    assert page.chart_divs == [f"chart-{name}" for name in charts]
    series = doc["series"]
    throughput = charts["throughput"]
    assert [s["label"] for s in throughput["series"]] == [
        "profile rate", "scheduled", "sent", "served (answers in)"
    ]  # fmt: skip
    assert throughput["data"] == [
        series["t"], series["target_rate"], series["offered"], series["sent"], series["throughput"]
    ]  # fmt: skip
    latency = charts["latency"]["data"]
    assert latency[3] == series["p99"] and latency[1] == series["p50"]
    assert charts["errors"]["data"][1] == series["errors"]
    assert page.data["phases"] == [[0.0, "calm"], [12.0, "busy"]]
    text = " ".join(page.text)
    for expected in (
        "calm",
        "busy",
        "POST /api/v1/orders",
        "PASSED",
        "AMD" if "AMD" in str(doc["machine"]["cpu_model"]) else "CPU",
    ):
        assert expected in text
    assert "server metrics unavailable: answered 404" in text


def test_the_report_shows_server_metrics_when_there_are_some(doc: dict[str, Any]) -> None:
    metrics = {
        "available": True,
        "reason": None,
        "pids": ["7"],
        "snapshots": 3,
        "series": {
            "t": [0, 1, 2], "rps": [10.0, 20.0, 30.0], "error_rate": [0.0, 0.5, None],
            "p50": [1.0, 1.0, 1.0], "p95": [2.0, 2.0, 2.0], "p99": [3.0, 4.0, 5.0],
            "rss_bytes": [1e8, 1e8, 1e8], "loop_lag_ms": [0.1, 0.2, 0.3],
        },
    }  # fmt: skip
    with_server = load_helpers.document(
        load_helpers.outcome(load_helpers.records()), metrics=metrics
    )
    page = _parse(html_report.render(with_server))
    assert page.data is not None
    server = next(c for c in page.data["charts"] if c["id"] == "server")
    assert server["data"][1] == [10.0, 20.0, 30.0] and server["data"][2] == [3.0, 4.0, 5.0]
    assert server["data"][4] == [0.0, 50.0, None]  # error rate in %
    assert not any("unavailable" in w for w in with_server["verdict"]["warnings"])


def test_a_long_run_report_stays_under_a_megabyte(doc: dict[str, Any]) -> None:
    long = copy.deepcopy(doc)
    seconds = 6 * 3600  # six hours of per-second points
    long["series"] = {
        "t": list(range(seconds)),
        "phase": [0] * seconds,
        **{name: [100 + s % 7 for s in range(seconds)] for name in ("target_rate", "offered", "sent", "throughput", "errors")},
        **{name: [12.345 + s % 11 for s in range(seconds)] for name in ("p50", "p95", "p99", "max", "lag_p99")},
    }  # fmt: skip
    long["memory"]["samples"] = [[s, 150_000_000 + s] for s in range(seconds)]
    text = html_report.render(long)
    assert len(text.encode()) <= html_report.MAX_BYTES
    page = _parse(text)
    assert page.data is not None
    throughput = next(c for c in page.data["charts"] if c["id"] == "throughput")
    assert len(throughput["data"][0]) <= html_report.MAX_POINTS
    assert len(html_report.render(doc).encode()) <= html_report.MAX_BYTES


def test_the_chart_data_cannot_close_its_script_tag(doc: dict[str, Any]) -> None:
    odd = copy.deepcopy(doc)
    odd["profile"]["phases"][0]["name"] = "</script><script>alert(1)</script>"
    text = html_report.render(odd)
    assert "</script><script>alert(1)" not in text
    page = _parse(text)
    assert page.data is not None and page.data["phases"][0][1].startswith("</script>")


# --- compare --------------------------------------------------------------------------------


def _slower(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    other = copy.deepcopy(doc)
    for summary in [other["totals"], *other["phases"], *other["totals"]["endpoints"].values()]:
        summary["latency_ms"] = {
            k: None if v is None else v * factor for k, v in summary["latency_ms"].items()
        }
    for name in ("p50", "p95", "p99", "max"):
        other["series"][name] = [None if v is None else v * factor for v in other["series"][name]]
    return other


def test_compare_flags_changes_beyond_the_noise(doc: dict[str, Any]) -> None:
    same = compare.compare(doc, copy.deepcopy(doc))
    assert same["regressions"] == 0
    assert {row["verdict"] for row in same["rows"]} <= {"within noise", "same"}
    worse = compare.compare(doc, _slower(doc, 1.5))
    p99 = next(r for r in worse["rows"] if r["scope"] == "totals" and r["metric"] == "p99_ms")
    assert p99["verdict"] == "worse" and p99["change"] == pytest.approx(50.0)
    # The synthetic latencies are constant per phase: the per-second noise is nil, so the
    # band is its floor; endpoints have no per-second values: the fixed ±5% band.
    assert p99["band_from"] == "per-second" and p99["band"] == pytest.approx(compare.MIN_BAND_PCT)
    endpoint = next(
        r for r in worse["rows"] if r["scope"] == "POST /api/v1/orders" and r["metric"] == "p99_ms"
    )
    assert endpoint["band"] == compare.FIXED_BAND_PCT and endpoint["verdict"] == "worse"
    slight = compare.compare(doc, _slower(doc, 1.03))
    row = next(
        r for r in slight["rows"] if r["scope"] == "POST /api/v1/orders" and r["metric"] == "p99_ms"
    )
    assert row["verdict"] == "within noise"  # 3% < the fixed 5% band
    better = compare.compare(_slower(doc, 2.0), doc)
    assert any(r["verdict"] == "better" for r in better["rows"]) and better["regressions"] == 0


def test_the_noise_band_follows_the_per_second_variation() -> None:
    steady = [100.0 + (s % 2) for s in range(60)]
    noisy = [100.0 + 40 * ((s * 7919) % 13 - 6) / 6 for s in range(60)]
    quiet = compare.relative_se(steady)
    loud = compare.relative_se(noisy)
    assert quiet is not None and loud is not None and loud > 5 * quiet
    assert compare.relative_se(steady[:5]) is None  # too short: the fixed band


def test_compare_command(doc: dict[str, Any], tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    report.write_json(a, doc)
    report.write_json(b, _slower(doc, 1.5))
    html = tmp_path / "cmp.html"
    runner = CliRunner()
    done = runner.invoke(app, ["compare", str(a), str(b), "--html", str(html)])
    assert done.exit_code == 0, done.output
    assert "p99_ms" in done.output and "WORSE" in done.output and "+50.00 %" in done.output
    page = _parse(html.read_text())
    assert page.data is not None and page.external == []
    assert [c["id"] for c in page.data["charts"]] == ["cmp-throughput", "cmp-p99"]
    assert runner.invoke(app, ["compare", str(a), str(b), "--fail-on-regression"]).exit_code == 1
    assert runner.invoke(app, ["compare", str(a), str(a), "--fail-on-regression"]).exit_code == 0
    (tmp_path / "other.json").write_text('{"scenario": "validate"}')
    refused = runner.invoke(app, ["compare", str(a), str(tmp_path / "other.json")])
    assert refused.exit_code == 2 and "not a `peakshop bench run` result" in refused.output


# --- SLO files --------------------------------------------------------------------------------


def test_slo_file_checks_run_and_endpoints(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "slo.toml"
    path.write_text(
        """
        [run]
        p99_ms = 50
        error_rate = 0.5
        min_throughput_rps = 10
        [endpoints."POST /api/v1/coupons/validate"]
        p99_ms = 5
        [endpoints.order]
        error_rate = 0.0
        [endpoints."GET /nowhere"]
        p99_ms = 1
        """
    )
    slo = slo_mod.load(path)
    checks = {(c["scope"], c["metric"]): c for c in slo_mod.evaluate(slo, doc["totals"])}
    assert checks[("run", "p99_ms")]["passed"] and checks[("run", "min_throughput_rps")]["passed"]
    assert not checks[("POST /api/v1/coupons/validate", "p99_ms")]["passed"]  # 10 ms in busy
    assert not checks[("POST /api/v1/orders", "error_rate")]["passed"]  # by short name
    nowhere = checks[("GET /nowhere", "p99_ms")]
    assert not nowhere["passed"] and "no request" in nowhere["note"]
    breached = load_helpers.document(load_helpers.outcome(load_helpers.records()), slo=slo)
    assert breached["verdict"]["valid"] and breached["verdict"]["slo_passed"] is False
    assert breached["verdict"]["exit_code"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\np99 = 5", "unknown key"),
        ("[runs]\np99_ms = 5", "unknown section"),
        ("[run]\nerror_rate = 5", "fraction"),
        ("[run]\np99_ms = 'fast'", "non-negative number"),
    ],
)
def test_bad_slo_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "slo.toml"
    path.write_text(text)
    with pytest.raises(slo_mod.SloError, match=message):
        slo_mod.load(path)
