"""deploy/: the Prometheus scrape configuration and the Grafana dashboard name only metrics
that peakshop exports, and cover what an operator watches during a sale."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import peakshop.monitoring.metrics  # registers the domain metrics
import peakshop.monitoring.middleware  # noqa: F401 (registers the HTTP metrics)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return loaded


def dashboard_queries() -> dict[str, list[str]]:
    """Panel title -> its PromQL expressions."""
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in dashboard()["panels"]
    }


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_prometheus_config_scrapes_peakshop_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "peakshop"
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package ships it
        subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], check=True)


def test_dashboard_queries_name_only_exported_metrics() -> None:
    exported = exported_names()
    used = set()
    for title, expressions in dashboard_queries().items():
        assert expressions, title
        for expr in expressions:
            for name in re.findall(r"\b((?:peakshop|process)_[a-z0-9_]+)\b", expr):
                assert name in exported, f"{title}: {name} is not a metric peakshop exports"
                used.add(name)
    assert {
        "peakshop_http_requests_total",
        "peakshop_http_request_duration_seconds_bucket",
        "peakshop_flash_sale_admissions_total",
        "peakshop_queue_depth",
        "peakshop_dead_letters",
        "peakshop_cache_requests_total",
        "peakshop_validation_log_queue_size",
        "process_resident_memory_bytes",
    } <= used


def test_dashboard_is_importable_grafana_json() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(t["refId"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    quantiles = " ".join(dashboard_queries()["Latency percentiles (all routes)"])
    for q in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in quantiles
