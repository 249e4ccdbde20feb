"""The minimal app that peakshop's coupon validation and flash-sale admission are measured
against.

Litestar + msgspec with ordinary ``@post`` handlers: the same body decode (a Struct with
code, user_id and order_total; a flash-sale order's user_id and quantity) and one dict
lookup, nothing else (no auth, no metrics, no validation log, no stock). Served by granian with the options ``peakshop serve`` uses, so that the
ratio of the two measures what peakshop adds on top of the framework and the server.

    python benchmarks/minimal_app.py --port 8001
"""

from __future__ import annotations

import argparse
from decimal import Decimal

import msgspec
from litestar import Litestar, Request, Response, get, post


class ValidateRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    user_id: str
    order_total: Decimal


class ValidateResponse(msgspec.Struct):
    valid: bool
    code: str
    discount: str
    final_total: str
    reason: str | None


# As many entries as the default data set has coupons; hits and misses cost the same.
COUPONS: dict[str, str] = {f"MIN-{number:05d}": "5.00" for number in range(5_000)}


@post("/api/v1/coupons/validate", status_code=200)
async def validate(data: ValidateRequest) -> ValidateResponse:
    discount = COUPONS.get(data.code.upper())
    total = f"{data.order_total:.2f}"
    if discount is None:
        return ValidateResponse(
            valid=False, code=data.code, discount="0.00", final_total=total, reason="not_found"
        )
    return ValidateResponse(
        valid=True, code=data.code, discount=discount, final_total=total, reason=None
    )


class FlashSaleOrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str
    quantity: int = 1


class Accepted(msgspec.Struct):
    order_id: str
    job_id: str
    status: str


SALES: dict[int, str] = {number: f"sale-{number}" for number in range(1, 10_001)}


@post("/api/v1/flash-sales/{sale_id:int}/orders", status_code=202)
async def flash_sale_order(sale_id: int, data: FlashSaleOrderRequest) -> Accepted:
    name = SALES.get(sale_id, "unknown")
    return Accepted(order_id=f"{name}-{data.user_id}", job_id=name, status="pending")


# A first page of 20 products, encoded once: the ceiling of a cached catalog read.
PAGES: dict[str, bytes] = {
    "": msgspec.json.encode(
        {
            "items": [
                {
                    "id": number,
                    "name": f"Product {number}",
                    "description": f"Product {number}: a seeded product.",
                    "price": "24.99",
                    "currency": "EUR",
                    "status": "active",
                    "seller": {"id": 1, "name": "Seller 00001"},
                    "category": {"id": 2, "name": "Shoes Basics", "path": "/1/2/"},
                    "image_urls": [f"https://img.example/p/{number}.jpg"],
                    "current_stock": 42,
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                }
                for number in range(1, 21)
            ],
            "next_cursor": "WyIxMjM0NTYiLG51bGwsMjBd",
        }
    )
}


@get("/api/v1/products")
async def products_page(request: Request) -> Response[bytes]:  # type: ignore[type-arg]
    body = PAGES.get(request.url.query or "", PAGES[""])
    return Response(content=body, media_type="application/json")


@get("/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}


app = Litestar(route_handlers=[validate, flash_sale_order, products_page, ready], debug=False)


def serve(*, host: str, port: int) -> None:
    """The same granian options as ``peakshop serve`` (src/peakshop/cli.py), one worker."""
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "minimal_app:app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        backlog=2048,
        log_access=False,
    ).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    serve(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
