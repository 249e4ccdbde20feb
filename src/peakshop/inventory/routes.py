"""HTTP routes of inventory and flash sales (the flash-sale order route is in orders)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Router, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from peakshop.auth import admin_guard, service_guard
from peakshop.catalog import service as catalog_service
from peakshop.inventory import repository, service
from peakshop.inventory.schemas import (
    FlashSaleCreate,
    FlashSaleOut,
    InventoryMetrics,
    ProductCreate,
    ProductOut,
    ProductPage,
    ProductUpdate,
)
from peakshop.kit.clock import utcnow
from peakshop.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page_of
from peakshop.orders import lifecycle
from peakshop.runtime import Runtime

Id = Annotated[int, QueryParameter(ge=1, le=2**63 - 1)]


@get("/api/v1/inventory", guards=[service_guard])
async def list_inventory(
    state: State,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ProductPage:
    """Products and their stock, newest first, with an opaque cursor."""
    runtime: Runtime = state.runtime
    now = utcnow()
    async with runtime.db.read() as conn:
        rows = await repository.list_products(
            conn, before_id=decode_cursor(cursor), limit=limit + 1
        )
        products = await service.products_out(conn, list(rows), now=now)
    items, next_cursor = page_of(products, limit=limit)
    return ProductPage(items=items, next_cursor=next_cursor)


@get("/api/v1/inventory/metrics", guards=[admin_guard])
async def inventory_metrics(
    state: State,
    low_stock_threshold: Annotated[int | None, QueryParameter(ge=0, le=1_000_000_000)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> InventoryMetrics:
    """Stock totals over all products and the products low on stock."""
    runtime: Runtime = state.runtime
    threshold = (
        runtime.settings.low_stock_threshold if low_stock_threshold is None else low_stock_threshold
    )
    async with runtime.db.read() as conn:
        return await service.inventory_metrics(conn, low_stock_threshold=threshold, limit=limit)


@get("/api/v1/inventory/{product_id:int}", guards=[service_guard])
async def get_inventory(product_id: FromPath[int], state: State) -> ProductOut:
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await service.get_product(conn, product_id=product_id, now=utcnow())


async def _stock_changed(runtime: Runtime, product_id: int, **audit: Any) -> None:
    """After an admin write: the catalog's cached product and lists are stale."""
    await runtime.cache.invalidate(catalog_service.LISTS, catalog_service.product_tag(product_id))
    await runtime.audit(subject=f"product:{product_id}", **audit)


@post("/api/v1/inventory", guards=[admin_guard], status_code=201)
async def create_inventory(data: JSONBody[ProductCreate], state: State) -> ProductOut:
    runtime: Runtime = state.runtime
    async with runtime.db.write() as conn:
        product = await service.create_product(conn, data=data, now=utcnow())
    await _stock_changed(runtime, product.id, action="inventory.create", before=None, after=product)
    return product


@put("/api/v1/inventory/{product_id:int}", guards=[admin_guard])
async def update_inventory(
    product_id: FromPath[int], data: JSONBody[ProductUpdate], state: State
) -> ProductOut:
    """Rename, reprice or set the available stock (a restock or a count correction)."""
    runtime: Runtime = state.runtime
    async with runtime.db.write() as conn:
        before = await service.get_product(conn, product_id=product_id, now=utcnow())
        product = await service.update_product(conn, product_id=product_id, data=data, now=utcnow())
    await _stock_changed(
        runtime, product_id, action="inventory.update", before=before, after=product
    )
    return product


@post("/api/v1/flash-sales", guards=[admin_guard], status_code=201)
async def create_flash_sale(data: JSONBody[FlashSaleCreate], state: State) -> FlashSaleOut:
    """Create a sale; its quantity is taken from the product's available stock."""
    runtime: Runtime = state.runtime
    now = utcnow()
    async with runtime.db.write() as conn:
        row = await service.create_sale(conn, data=data, now=now)
    await lifecycle.load_sale_hot(runtime, row["id"], replace=True)
    sale = service.sale_out(row, now=now)
    await runtime.cache.invalidate(
        catalog_service.LISTS, catalog_service.product_tag(data.product_id)
    )
    await runtime.audit(
        action="flash_sale.create", subject=f"flash_sale:{sale.id}", before=None, after=sale
    )
    return sale


@get("/api/v1/flash-sales/{sale_id:int}", guards=[service_guard])
async def get_flash_sale(sale_id: FromPath[int], state: State) -> FlashSaleOut:
    """Status and counts, from the system of record: remaining + reserved + sold = quantity."""
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await service.get_sale(conn, sale_id=sale_id, now=utcnow())


router = Router(
    path="/",
    route_handlers=[
        list_inventory,
        inventory_metrics,
        get_inventory,
        create_inventory,
        update_inventory,
        create_flash_sale,
        get_flash_sale,
    ],
    tags=["inventory"],
)
