"""A real Prometheus (Debian's ``prometheus`` package) scrapes a real ``peakshop serve`` with
deploy/prometheus.yml (target and interval changed for the test): after some traffic a
PromQL query returns a positive request rate, and every query of the Grafana dashboard is
valid and has data.

Without the prometheus binary the test skips with the reason, except under CI=true, where
that is a failure."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings, settings_env
from tests.fixtures.processes import spawn_server, wait_ready
from tests.fixtures.servers import free_port, unavailable
from tests.fixtures.traffic import Traffic, create_sale
from tests.monitoring.test_deploy_files import DEPLOY, dashboard_queries

pytestmark = pytest.mark.slow

RATE_WINDOW = "10s"


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("Prometheus: install Debian's package (apt-get install prometheus)")
    assert binary is not None
    return binary


def scrape_config(target: str) -> str:
    """deploy/prometheus.yml pointed at the test's server, scraping every second."""
    text = (DEPLOY / "prometheus.yml").read_text()
    for old, new in (
        ("127.0.0.1:8000", target),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("scrape_timeout: 4s", "scrape_timeout: 1s"),
        ("evaluation_interval: 5s", "evaluation_interval: 1s"),
    ):
        assert old in text, f"deploy/prometheus.yml changed: {old!r} not found"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def run_prometheus(binary: str, config: Path, workdir: Path) -> Iterator[str]:
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, f"{url}/-/ready", timeout=30, log=log_path.read_text)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(url: str, expr: str, *, timeout: float) -> float:
    """The first positive value of a one-series query."""
    deadline = time.monotonic() + timeout
    while True:
        result = query(url, expr)
        if result and float(result[0]["value"][1]) > 0:
            return float(result[0]["value"][1])
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr} had no positive value after {timeout}s: {result}")
        time.sleep(0.5)


def test_prometheus_scrapes_a_positive_request_rate_and_the_dashboard_queries_work(
    prometheus_binary: str, sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        sqlite_url, validation_log_dead_letter_path=str(tmp_path / "dead-letters.jsonl")
    )
    with spawn_server(settings_env(settings), log_dir=tmp_path) as server:
        sale_id = create_sale(server.url, quantity=1_000)
        config = tmp_path / "prometheus.yml"
        config.write_text(scrape_config(server.url.removeprefix("http://")))
        with (
            run_prometheus(prometheus_binary, config, tmp_path) as prometheus,
            Traffic(server.url, rate=100, duration=30, sale_ids=(sale_id,)) as traffic,
        ):
            rate = wait_for(
                prometheus, f"sum(rate(peakshop_http_requests_total[{RATE_WINDOW}]))", timeout=20
            )
            by_route = query(
                prometheus,
                f"sum by (route) (rate(peakshop_http_requests_total[{RATE_WINDOW}]))",
            )
            for title, expressions in dashboard_queries().items():
                for expr in expressions:
                    promql = expr.replace("$__rate_interval", RATE_WINDOW).replace(
                        "$job", "peakshop"
                    )
                    assert query(prometheus, promql), f"{title}: no data for {promql}"
        assert traffic.sent > 0
    assert rate > 0
    routes = {series["metric"]["route"] for series in by_route}
    assert {"/api/v1/coupons/validate", "/api/v1/flash-sales/{sale_id:int}/orders"} <= routes
