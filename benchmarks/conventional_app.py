"""The conventional flash-sale placement that peakshop's scaled mode is measured against.

What the widely used platforms do: every attempt opens a PostgreSQL transaction, locks the
sale's stock row with ``SELECT ... FOR UPDATE``, checks the stock and the buyer's cap, and
writes the order, so every buyer (winner or loser) queues on one row lock. Same tables,
same request and answers as peakshop (202 / 409 with the reason, idempotent on the key),
Litestar + msgspec + SQLAlchemy Core on asyncpg, served by granian like ``peakshop serve``.

    PEAKSHOP_DATABASE_URL=postgresql+asyncpg://... python benchmarks/conventional_app.py --port 8002
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from litestar import Litestar, Request, get, post
from litestar.response import Response
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from peakshop.inventory.models import flash_sale_buyers, flash_sales
from peakshop.orders.models import order_items, orders


class FlashSaleOrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str
    quantity: int = 1


ENGINE: AsyncEngine | None = None


def engine() -> AsyncEngine:
    global ENGINE
    if ENGINE is None:
        ENGINE = create_async_engine(
            os.environ["PEAKSHOP_DATABASE_URL"], pool_size=20, max_overflow=20
        )
    return ENGINE


def _refused(reason: str) -> Response[dict[str, object]]:
    return Response({"error": {"code": reason}, "reason": reason}, status_code=409)


@post("/api/v1/flash-sales/{sale_id:int}/orders", status_code=202)
async def place(
    sale_id: int,
    data: FlashSaleOrderRequest,
    request: Request,  # type: ignore[type-arg]
) -> Response[dict[str, object]]:
    key = request.headers.get("idempotency-key", "")
    scope = f"conventional:{sale_id}"
    digest = hashlib.sha256(f"{sale_id}|{data.user_id}|{data.quantity}".encode()).hexdigest()
    now = datetime.now(UTC)
    async with engine().begin() as conn:
        existing = (
            await conn.execute(
                sa.select(orders.c.id, orders.c.job_id).where(
                    orders.c.idempotency_scope == scope, orders.c.idempotency_key == key
                )
            )
        ).first()
        if existing is not None:
            return Response(
                {"order_id": existing[0], "job_id": existing[1], "status": "pending"},
                status_code=202,
            )
        sale = (
            await conn.execute(
                sa.select(
                    flash_sales.c.remaining,
                    flash_sales.c.per_user_limit,
                    flash_sales.c.product_id,
                    flash_sales.c.price_cents,
                )
                .where(flash_sales.c.id == sale_id)
                .with_for_update()
            )
        ).first()
        if sale is None:
            return Response({"error": {"code": "not_found"}}, status_code=404)
        remaining, per_user_limit, product_id, price = sale
        if remaining < data.quantity:
            return _refused("sold_out")
        held = (
            await conn.execute(
                sa.select(flash_sale_buyers.c.quantity).where(
                    flash_sale_buyers.c.sale_id == sale_id,
                    flash_sale_buyers.c.user_id == data.user_id,
                )
            )
        ).scalar() or 0
        if held + data.quantity > per_user_limit:
            return _refused("user_limit_reached")
        await conn.execute(
            sa.update(flash_sales)
            .where(flash_sales.c.id == sale_id)
            .values(
                remaining=flash_sales.c.remaining - data.quantity,
                reserved=flash_sales.c.reserved + data.quantity,
            )
        )
        if held:
            await conn.execute(
                sa.update(flash_sale_buyers)
                .where(
                    flash_sale_buyers.c.sale_id == sale_id,
                    flash_sale_buyers.c.user_id == data.user_id,
                )
                .values(quantity=held + data.quantity)
            )
        else:
            await conn.execute(
                sa.insert(flash_sale_buyers).values(
                    sale_id=sale_id, user_id=data.user_id, quantity=data.quantity
                )
            )
        order_id, job_id = f"ord_{secrets.token_hex(12)}", f"job_{secrets.token_hex(12)}"
        await conn.execute(
            sa.insert(orders).values(
                id=order_id,
                user_id=data.user_id,
                kind="flash_sale",
                flash_sale_id=sale_id,
                status="pending",
                subtotal_cents=price * data.quantity,
                discount_cents=0,
                total_cents=price * data.quantity,
                idempotency_scope=scope,
                idempotency_key=key,
                request_hash=digest,
                job_id=job_id,
                created_at=now,
                updated_at=now,
                pay_by=now + timedelta(minutes=15),
            )
        )
        await conn.execute(
            sa.insert(order_items).values(
                order_id=order_id,
                product_id=product_id,
                quantity=data.quantity,
                unit_price_cents=price,
            )
        )
    return Response({"order_id": order_id, "job_id": job_id, "status": "pending"}, status_code=202)


@get("/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}


app = Litestar(route_handlers=[place, ready], debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "conventional_app:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        backlog=2048,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
