"""CPU of one uncached product page, in-process: the listing's read and the page's JSON, as
the route computes them on a cache miss (no HTTP, no cache), over a seeded catalog.

    PEAKSHOP_DATABASE_URL=sqlite+aiosqlite:///var/catalog.db python benchmarks/list_read_cost.py [--reads 2000]

Each read asks for the first page above a price floor no earlier read used (as the uncached
run of ``peakshop bench catalog``), with the synchronous SQLite driver on this thread. To
compare two versions of the code, run it from both trees against the same file, alternating.
"""

from __future__ import annotations

import argparse
import time

import msgspec
import sqlalchemy as sa

from peakshop.catalog import listing, service
from peakshop.config import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=2_000)
    args = parser.parse_args()
    url = load_settings().database_url
    if not url.startswith("sqlite"):
        raise SystemExit(
            "a SQLite database is needed (PEAKSHOP_DATABASE_URL=sqlite+aiosqlite:///...)"
        )
    engine = sa.create_engine("sqlite:///" + url.split(":///", 1)[1])
    encoder = msgspec.json.Encoder()

    def page(floor: int) -> bytes:
        filters = listing.Filters(min_price_cents=floor, sort="price_asc")
        result = service.list_products(conn, filters=filters, cursor=None, page=None, limit=20)
        return encoder.encode(result)

    with engine.connect() as conn:
        for floor in range(100, 300):  # warm the statement caches and the pages
            page(floor)
        started = time.process_time()
        for n in range(args.reads):
            page(1_000 + 3 * n)
        cpu = time.process_time() - started
    print(f"{cpu / args.reads * 1e6:.0f} us of CPU per page ({args.reads} pages)")


if __name__ == "__main__":
    main()
