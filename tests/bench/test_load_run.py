"""Short real runs of ``peakshop bench run`` against a spawned ``peakshop serve`` on SQLite:
a scaled-down profile file, two sender processes, an SLO file, the JSON and HTML outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from peakshop.bench import html_report
from tests.bench.test_load_report import _parse
from tests.conftest import make_settings, settings_env
from tests.fixtures.processes import server_env

ROOT = Path(__file__).resolve().parents[2]

SHORT = """
name = "basic-short"
[[phases]]
name = "warm-up"
duration = 1
rate = 40
[[phases]]
name = "ramp"
duration = 2
from = 40
to = 120
[[phases]]
name = "peak"
duration = 2
rate = 120
[[phases]]
name = "cool-down"
duration = 1
from = 120
to = 40
"""

SLO = """
[run]
p99_ms = 2000
error_rate = 0.05
[endpoints."GET /api/v1/products/{id}"]
p99_ms = 2000
[endpoints.browse]
p50_ms = 0.001   # breached on purpose: the exit code must say so
"""


@pytest.fixture(scope="module")
def catalog_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bench-run") / "seeded.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    env = server_env(settings_env(make_settings(url)))
    command = [sys.executable, "-m", "peakshop", "seed", "--users", "3000", "--coupons", "300"]
    command += ["--usage", "60", "--sellers", "20", "--products", "2000"]
    subprocess.run(command, env=env, check=True, capture_output=True)
    return url


def _run(url: str, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str, Path]:
    out, html = tmp_path / "run.json", tmp_path / "run.html"
    env = server_env(settings_env(make_settings(url)))
    command = [sys.executable, "-m", "peakshop", "bench", "run", "--spawn"]
    command += ["--json", str(out), "--html", str(html), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(out.read_text()), done.stdout, html


@pytest.mark.slow
def test_storefront_run_with_an_slo_file(catalog_url: str, tmp_path: Path) -> None:
    (tmp_path / "short.toml").write_text(SHORT)
    (tmp_path / "slo.toml").write_text(SLO)
    code, doc, output, html = _run(
        catalog_url,
        tmp_path,
        *("--profile", str(tmp_path / "short.toml"), "--mix", "storefront"),
        *("--procs", "2", "--think-time", "0.2", "--slo", str(tmp_path / "slo.toml")),
    )
    assert doc["schema_version"] == 1 and doc["kind"] == "peakshop.bench.run"
    assert [p["name"] for p in doc["phases"]] == ["warm-up", "ramp", "peak", "cool-down"]
    assert doc["senders"]["procs"] == 2 and doc["target"]["mode"] == "embedded"
    sent = sum(p["sent"] for p in doc["phases"])
    assert sent == sum(p["planned"] for p in doc["phases"]) > 300
    # The totals: the measured phases whose senders kept up (on a loaded machine a phase can
    # be invalid, and is then left out as the report says); never the warm-up.
    kept = [p["name"] for p in doc["phases"] if p["measured"] and p["valid"]]
    assert doc["totals"]["phases"] == kept and "warm-up" not in kept and kept
    assert [p["name"] for p in doc["phases"] if p["measured"]] == ["ramp", "peak", "cool-down"]
    labels = {label for p in doc["phases"][1:] for label in p["endpoints"]}
    assert {"GET /api/v1/products", "GET /api/v1/products/{id}"} <= labels
    assert labels <= {
        "GET /api/v1/products",
        "GET /api/v1/products/{id}",
        "POST /api/v1/coupons/validate",
        "POST /api/v1/orders",
    }
    for phase in doc["phases"]:
        assert set(phase["statuses"]) <= {"200", "202", "409"}, phase["statuses"]
        assert not phase["errors"]
    assert doc["mix"]["sessions"]["mean_actions"] > 2
    assert sum(doc["series"]["offered"]) == sent
    # The SLO: the run is valid, one threshold was breached on purpose: exit code 1.
    checks = {(c["scope"], c["metric"]): c["passed"] for c in doc["slo"]["checks"]}
    assert checks[("run", "p99_ms")] and checks[("GET /api/v1/products/{id}", "p99_ms")]
    assert checks[("GET /api/v1/products", "p50_ms")] is False
    assert doc["verdict"]["slo_passed"] is False and code == 1
    assert "BREACH" in output and "exit code 1" in output
    # The server's RSS was sampled; its monitoring history may or may not exist yet.
    assert doc["memory"]["source"] == "psutil" and doc["memory"]["peak_bytes"] > 0
    assert isinstance(doc["server_metrics"]["available"], bool)
    text = html.read_text()
    assert len(text.encode()) <= html_report.MAX_BYTES
    page = _parse(text)
    assert page.data is not None
    throughput = next(c for c in page.data["charts"] if c["id"] == "throughput")
    assert throughput["data"][2] == doc["series"]["offered"]


@pytest.mark.slow
def test_flash_sale_day_run(catalog_url: str, tmp_path: Path) -> None:
    (tmp_path / "day.toml").write_text(
        '[[phases]]\nname = "browse"\nduration = 2\nrate = 40\n'
        '[[phases]]\nname = "peak"\nduration = 2\nrate = 150\n'
    )
    code, doc, _, _ = _run(
        catalog_url,
        tmp_path,
        *("--profile", str(tmp_path / "day.toml"), "--mix", "flash-sale-day"),
        *("--think-time", "0.1", "--sale-units", "20"),
    )
    sale = doc["mix"]["details"]["sale"]
    assert sale["units"] == 20 and sale["opens_after_s"] == 2.0
    # The run started when the sale was planned to open minus 2 s (to the tenth of a second).
    assert sale["opened_after_start_s"] == pytest.approx(2.0, abs=0.2)
    # From the peak phase itself: the totals leave out a phase whose senders fell behind.
    storm = doc["phases"][1]["endpoints"]["POST /api/v1/flash-sales/{id}/orders"]
    assert storm["sent"] > 20 and storm["failed"] == 0
    assert storm["statuses"].get("202", 0) <= 20 and "409" in storm["statuses"]
    assert doc["phases"][0]["endpoints"].get("POST /api/v1/flash-sales/{id}/orders") is None
    assert code == (0 if doc["verdict"]["valid"] else 1)
