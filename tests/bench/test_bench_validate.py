"""The validate scenario: its request mix, and short real runs of ``peakshop bench validate``
against a spawned server (and the minimal app) on a small seeded database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from peakshop.bench import mix
from peakshop.bench.mix import Kind
from tests.conftest import make_settings, settings_env
from tests.fixtures.processes import server_env

ROOT = Path(__file__).resolve().parents[2]
MINIMAL_APP = ROOT / "benchmarks" / "minimal_app.py"


@pytest.fixture(scope="module")
def seeded_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bench-validate") / "seeded.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    env = server_env(settings_env(make_settings(url)))
    command = [sys.executable, "-m", "peakshop", "seed", "--users", "3000", "--coupons", "300"]
    subprocess.run([*command, "--usage", "60"], env=env, check=True, capture_output=True)
    return url


def _row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 1,
        "code": "SAVE10-AAAAAA",
        "type": "time_window",
        "status": "active",
        "starts_at": None,
        "ends_at": None,
        "owner_user_id": None,
        "usage_limit": None,
        "per_user_limit": 1,
        "used_count": 0,
        "min_order_total_cents": 0,
    }
    row.update(values)
    return row


def test_classify_tells_every_kind_apart() -> None:
    now = datetime.now(UTC)
    rows = [
        _row(id=1, code="WINDOW-OK"),
        _row(id=2, code="OWNED-OK", type="user_specific", owner_user_id="user_1"),
        _row(id=3, code="OLD", ends_at=now - timedelta(days=2)),
        _row(id=4, code="OFF", status="inactive"),
        _row(id=5, code="FULL", usage_limit=5, used_count=5),
        _row(id=6, code="USED", type="user_specific", owner_user_id="user_2"),
        _row(id=7, code="ENDS-SOON", ends_at=now + timedelta(minutes=5)),
        # SQLite hands back naive datetimes, in UTC.
        _row(id=8, code="NAIVE-OLD", ends_at=(now - timedelta(days=1)).replace(tzinfo=None)),
    ]
    by_kind = mix.classify(rows, per_user={(6, "user_2"): 1}, now=now.timestamp())
    codes = {kind: sorted(r["code"] for r in found) for kind, found in by_kind.items()}
    assert codes[Kind.VALID_WINDOW] == ["WINDOW-OK"]
    assert codes[Kind.VALID_USER] == ["OWNED-OK"]  # USED: its owner has no use left
    assert codes[Kind.WRONG_OWNER] == ["OWNED-OK", "USED"]
    assert codes[Kind.EXPIRED] == ["NAIVE-OLD", "OLD"]
    assert codes[Kind.INACTIVE] == ["OFF"]


def test_parse_weights() -> None:
    assert mix.parse_weights(None) == mix.DEFAULT_WEIGHTS
    assert mix.parse_weights("expired=1,unknown_code=3") == {Kind.EXPIRED: 1.0, Kind.UNKNOWN: 3.0}
    with pytest.raises(mix.MixError, match="kind=weight"):
        mix.parse_weights("nope=1")
    with pytest.raises(mix.MixError, match="not all zero"):
        mix.parse_weights("expired=0")


def test_the_mix_from_a_seeded_database_holds_every_kind(seeded_url: str) -> None:
    the_mix = mix.load(make_settings(seeded_url), size=600, weights=mix.DEFAULT_WEIGHTS, seed=7)
    counts = the_mix.counts()
    assert set(counts) == {kind.value for kind in Kind}
    assert all(count > 0 for count in counts.values()), counts
    assert sum(counts.values()) == len(the_mix.bodies()) == 600
    assert the_mix.database["coupons"] == 300 and the_mix.database["users"] == 3000
    wrong = [i for i in the_mix.items if i.kind is Kind.WRONG_OWNER]
    assert wrong and all(i.user_id.startswith("user_") for i in wrong)
    # Same seed, same requests: runs are comparable.
    again = mix.load(make_settings(seeded_url), size=600, weights=mix.DEFAULT_WEIGHTS, seed=7)
    assert again.bodies() == the_mix.bodies()


def test_an_empty_database_is_refused(sqlite_url: str) -> None:
    with pytest.raises(mix.MixError, match="seed it first"):
        mix.load(make_settings(sqlite_url), size=10, weights=mix.DEFAULT_WEIGHTS)


def _bench(url: str, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / f"bench-{time.monotonic_ns()}.json"
    env = server_env(settings_env(make_settings(url)))
    command = [sys.executable, "-m", "peakshop", "bench", "validate", "--spawn", "--json", str(out)]
    done = subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a target failed here
    return done.returncode, json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_closed_loop_run_against_spawned_servers(seeded_url: str, tmp_path: Path) -> None:
    code, document, output = _bench(
        seeded_url,
        tmp_path,
        *("--requests", "300", "--concurrency", "20", "--warmup", "50", "--procs", "2"),
        *("--compare-minimal", "--minimal-app", str(MINIMAL_APP)),
    )
    ours, minimal = document["runs"]
    for run in (ours, minimal):
        assert run["total"] == run["succeeded"] == 300 and run["failed"] == 0
        assert run["senders"] == 2 and run["throughput_rps"] > 0 and run["valid"]
        latency = run["latency_ms"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert (ours["server"], minimal["server"]) == ("peakshop", "minimal")
    # Every kind of the mix got the answer it stands for.
    check = document["mix"]["check"]
    assert set(check) == {kind.value for kind in Kind}
    assert all(outcome == {"matched": 20} for outcome in check.values()), check
    names = {target["name"] for target in document["targets"]}
    assert names == {"reference_throughput", "reference_p95", "sustained_ratio", "server_rss"}
    assert document["server_rss"]["after_run"]["rss"] > 0
    assert document["machine"]["logical_cores"] and document["machine"]["packages"]["granian"]
    assert document["mode"] == "embedded" and document["database"]["rows"]["users"] == 3000
    assert (code == 0) == document["all_passed"]
    assert "Targets" in output and "reference run P95" in output


@pytest.mark.slow
def test_open_loop_run_against_a_spawned_server(seeded_url: str, tmp_path: Path) -> None:
    _, document, _ = _bench(
        seeded_url, tmp_path, "--rate", "200", "--duration", "1", "--warmup", "0"
    )
    (run,) = document["runs"]
    assert run["mode"] == "open" and run["planned"] == run["total"] == 200
    assert run["succeeded"] == 200
    assert run["latency_from"] == "scheduled send"
    assert run["lag_ms"]["max"] >= run["lag_ms"]["p99"] >= 0
    assert run["valid"] is (run["lag_ms"]["p99"] <= 5.0)
