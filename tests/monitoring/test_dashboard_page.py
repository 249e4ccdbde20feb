"""The dashboard page as served: no token needed to load it, every asset from the app itself
(no CDN), a strict content security policy, and its weight."""

from __future__ import annotations

import re
from pathlib import Path

from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from tests.conftest import make_settings

PAGE_WEIGHT_LIMIT = 300 * 1024
STATIC = Path(__file__).resolve().parents[2] / "src" / "peakshop" / "monitoring" / "static"


async def test_page_and_its_assets_come_from_the_app_and_weigh_under_the_limit(
    sqlite_url: str,
) -> None:
    async with AsyncTestClient(app=create_app(make_settings(sqlite_url))) as client:
        page = await client.get("/dashboard")  # no token: the page asks for it
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"  # ?token= never leaks

        scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page.text)
        styles = re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', page.text)
        assets = scripts + styles
        assert sorted(assets) == [
            "/dashboard/static/dashboard.css",
            "/dashboard/static/dashboard.js",
            "/dashboard/static/vendor/uplot/uPlot.iife.min.js",
            "/dashboard/static/vendor/uplot/uPlot.min.css",
        ]
        assert "<script>" not in page.text  # nothing inline (the CSP would refuse it)

        weight = len(page.content)
        for asset in assets:
            response = await client.get(asset)
            assert response.status_code == 200, asset
            weight += len(response.content)
        assert weight <= PAGE_WEIGHT_LIMIT, f"page weight {weight} bytes"

        assert (await client.get("/dashboard/static/nope.js")).status_code == 404
        assert (await client.get("/dashboard/static/vendor/uplot/LICENSE")).status_code == 200


def test_the_vendored_library_states_its_version_and_license() -> None:
    vendor = STATIC / "vendor" / "uplot"
    script = (vendor / "uPlot.iife.min.js").read_text()
    version = re.search(r"uPlot \(v([\d.]+)\)", script)
    assert version is not None
    assert f"uPlot {version.group(1)}" in (vendor / "README.md").read_text()
    assert f"uPlot</a> {version.group(1)}" in (STATIC / "dashboard.html").read_text()
    assert "MIT License" in (vendor / "LICENSE").read_text()
