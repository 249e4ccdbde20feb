"""The live dashboard: one static page, its script and the vendored chart library (uPlot,
see static/vendor/uplot/README.md). No build step: the files are served as they are.

Loading the page needs no token: the page asks for the admin token (or takes ``?token=``)
and sends it with its own calls (the monitoring API, the WebSocket ``/ws/monitoring``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.response import Response
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).parent / "static"

# Everything the page loads comes from here; inline code and other origins are refused.
# The token may sit in the address (?token=): no referrer, never framed, never cached.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@cache
def _page() -> bytes:
    return (STATIC_DIR / "dashboard.html").read_bytes()


@get("/dashboard", include_in_schema=False, media_type=MediaType.HTML)
async def dashboard() -> Response[bytes]:
    return Response(_page(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


static_files = create_static_files_router(
    path="/dashboard/static",
    directories=[STATIC_DIR],
    name="dashboard-static",
    # Revalidated on each load (Last-Modified / ETag): an upgrade is seen at once.
    cache_control=CacheControlHeader(no_cache=True),
    include_in_schema=False,
)

router = Router(path="/", route_handlers=[dashboard, static_files])
