"""Catalog use cases: sellers, the category tree, products, and the product listing with
its sellers and categories in a fixed number of queries.

Services take the caller's connection and raise typed errors; they never commit. Each
write returns the cache tags it makes stale; the route invalidates them after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.catalog import listing, repository
from peakshop.catalog.errors import CatalogNotFound, StillReferenced, UnknownReference
from peakshop.catalog.models import products
from peakshop.catalog.schemas import (
    CategoryIn,
    CategoryOut,
    CategoryPatch,
    CategoryRef,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    SellerIn,
    SellerOut,
    SellerPatch,
    SellerRef,
)
from peakshop.errors import InvalidInput
from peakshop.kit.clock import from_db
from peakshop.kit.money import format_cents, parse_cents

# Cache tags: every list depends on "products"; one product's detail on "product:<id>";
# everything on "catalog" (a seller or category change reaches every product that embeds it).
LISTS = "products"
CATALOG = "catalog"


def product_tag(product_id: int) -> str:
    return f"product:{product_id}"


def _dt(value: datetime) -> datetime:
    return from_db(value) or value


def cents(value: Decimal, field: str) -> int:
    try:
        return parse_cents(value, field=field)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


def _changes(data: Any) -> dict[str, Any]:
    changes = {
        name: getattr(data, name)
        for name in data.__struct_fields__
        if getattr(data, name) is not None
    }
    if not changes:
        raise InvalidInput("nothing to change")
    return changes


# --- sellers -----------------------------------------------------------------------------------


def seller_out(row: RowMapping) -> SellerOut:
    return SellerOut(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
    )


async def create_seller(conn: AsyncConnection, *, data: SellerIn, now: datetime) -> SellerOut:
    values = {"name": data.name, "email": data.email, "created_at": now, "updated_at": now}
    return seller_out(await repository.insert_seller(conn, values))


async def get_seller(conn: AsyncConnection, *, seller_id: int) -> SellerOut:
    row = await repository.get_seller(conn, seller_id)
    if row is None:
        raise CatalogNotFound("seller", seller_id)
    return seller_out(row)


async def update_seller(
    conn: AsyncConnection, *, seller_id: int, data: SellerPatch, now: datetime
) -> tuple[SellerOut, RowMapping]:
    before = await repository.get_seller(conn, seller_id)
    if before is None:
        raise CatalogNotFound("seller", seller_id)
    row = await repository.update_seller(conn, seller_id, {**_changes(data), "updated_at": now})
    assert row is not None
    return seller_out(row), before


async def delete_seller(conn: AsyncConnection, *, seller_id: int) -> RowMapping:
    before = await repository.get_seller(conn, seller_id)
    if before is None:
        raise CatalogNotFound("seller", seller_id)
    if await repository.references(conn, products.c.seller_id, seller_id):
        raise StillReferenced("the seller still has products: move or delete them first")
    await repository.delete_seller(conn, seller_id)
    return before


# --- categories --------------------------------------------------------------------------------


def category_out(row: RowMapping) -> CategoryOut:
    return CategoryOut(
        id=row["id"],
        name=row["name"],
        parent_id=row["parent_id"],
        path=row["path"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
    )


async def _parent_path(conn: AsyncConnection, parent_id: int | None) -> str:
    if parent_id is None:
        return "/"
    parent = await repository.get_category(conn, parent_id)
    if parent is None:
        raise UnknownReference("category", parent_id, field="parent_id")
    return str(parent["path"])


async def create_category(conn: AsyncConnection, *, data: CategoryIn, now: datetime) -> CategoryOut:
    parent_path = await _parent_path(conn, data.parent_id)
    inserted = await repository.insert_category(
        conn,
        {
            "name": data.name,
            "parent_id": data.parent_id,
            "path": "/",  # the id is known only after the insert
            "created_at": now,
            "updated_at": now,
        },
    )
    path = f"{parent_path}{inserted['id']}/"
    row = await repository.update_category(conn, inserted["id"], {"path": path})
    assert row is not None
    return category_out(row)


async def update_category(
    conn: AsyncConnection, *, category_id: int, data: CategoryPatch, now: datetime
) -> tuple[CategoryOut, RowMapping]:
    before = await repository.get_category(conn, category_id)
    if before is None:
        raise CatalogNotFound("category", category_id)
    values: dict[str, Any] = {"updated_at": now}
    if data.name is not None:
        values["name"] = data.name
    moving = data.make_root or data.parent_id is not None
    if data.make_root and data.parent_id is not None:
        raise InvalidInput("give parent_id or make_root, not both", field="parent_id")
    if not moving and data.name is None:
        raise InvalidInput("nothing to change")
    if moving:
        parent_path = await _parent_path(conn, data.parent_id)
        if parent_path.startswith(before["path"]):
            raise InvalidInput("a category cannot move under itself", field="parent_id")
        values["parent_id"] = data.parent_id
        new_path = f"{parent_path}{category_id}/"
        await repository.move_subtree(conn, before["path"], new_path)
    row = await repository.update_category(conn, category_id, values)
    assert row is not None
    return category_out(row), before


async def delete_category(conn: AsyncConnection, *, category_id: int) -> RowMapping:
    before = await repository.get_category(conn, category_id)
    if before is None:
        raise CatalogNotFound("category", category_id)
    if await repository.has_children(conn, category_id):
        raise StillReferenced("the category has subcategories: delete or move them first")
    if await repository.references(conn, products.c.category_id, category_id):
        raise StillReferenced("the category still has products: move them first")
    await repository.delete_category(conn, category_id)
    return before


# --- products ----------------------------------------------------------------------------------


async def _check_refs(
    conn: AsyncConnection, seller_id: int | None, category_id: int | None
) -> None:
    if seller_id is not None and await repository.get_seller(conn, seller_id) is None:
        raise UnknownReference("seller", seller_id, field="seller_id")
    if category_id is not None and await repository.get_category(conn, category_id) is None:
        raise UnknownReference("category", category_id, field="category_id")


def product_of(row: Sequence[Any]) -> ProductOut:
    """A product from a row in ``listing.PRODUCT_COLUMNS`` order (seller and category joined
    in): typed by SQLAlchemy, or as the driver returns it (``listing``'s reads: the image
    list is JSON text, and on SQLite the stamps are text too)."""
    (id_, name, description, price_cents, currency, status, seller_id, category_id,
     image_urls, available, created_at, updated_at, seller_name, category_name,
     category_path) = row  # fmt: skip
    return ProductOut(
        id=id_,
        name=name,
        description=description,
        price=format_cents(price_cents),
        currency=currency,
        status=status,
        seller=None if seller_id is None else SellerRef(seller_id, seller_name),
        category=None
        if category_id is None
        else CategoryRef(category_id, category_name, category_path),
        image_urls=_decode_list(image_urls)
        if isinstance(image_urls, str | bytes)
        else list(image_urls or []),
        current_stock=available,
        created_at=_stamp(created_at),
        updated_at=_stamp(updated_at),
    )


def _stamp(value: datetime | str) -> datetime:
    return _dt(datetime.fromisoformat(value) if isinstance(value, str) else value)


_decode_list = msgspec.json.Decoder(list[str]).decode


async def product_out(conn: AsyncConnection, product_id: int) -> ProductOut:
    query = listing.select_products().where(products.c.id == product_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise CatalogNotFound("product", product_id)
    return product_of(row)


async def create_product(conn: AsyncConnection, *, data: ProductIn, now: datetime) -> ProductOut:
    await _check_refs(conn, data.seller_id, data.category_id)
    row = await repository.insert_product(
        conn,
        {
            "name": data.name,
            "description": data.description,
            "price_cents": cents(data.price, "price"),
            "currency": data.currency,
            "status": data.status,
            "seller_id": data.seller_id,
            "category_id": data.category_id,
            "image_urls": data.image_urls,
            "initial_stock": data.stock,
            "available": data.stock,
            "created_at": now,
            "updated_at": now,
        },
    )
    return await product_out(conn, row["id"])


def read_product(conn: sa.Connection, *, product_id: int) -> ProductOut:
    """Synchronous: run it with ``Database.run_read`` (the route's hot path)."""
    row = listing.product_row(conn, product_id)
    if row is None:
        raise CatalogNotFound("product", product_id)
    return product_of(row)


async def update_product(
    conn: AsyncConnection, *, product_id: int, data: ProductPatch, now: datetime
) -> tuple[ProductOut, RowMapping]:
    before = await repository.get_product(conn, product_id)
    if before is None:
        raise CatalogNotFound("product", product_id)
    changes = _changes(data)
    await _check_refs(conn, changes.get("seller_id"), changes.get("category_id"))
    if "price" in changes:
        changes["price_cents"] = cents(changes.pop("price"), "price")
    row = await repository.update_product(conn, product_id, {**changes, "updated_at": now})
    assert row is not None
    return await product_out(conn, product_id), before


async def archive_product(
    conn: AsyncConnection, *, product_id: int, now: datetime
) -> tuple[ProductOut, RowMapping]:
    """DELETE archives: orders keep pointing at the product; it leaves the active listing."""
    before = await repository.get_product(conn, product_id)
    if before is None:
        raise CatalogNotFound("product", product_id)
    row = await repository.update_product(
        conn, product_id, {"status": "archived", "updated_at": now}
    )
    assert row is not None
    return await product_out(conn, product_id), before


def list_products(
    conn: sa.Connection,
    *,
    filters: listing.Filters,
    cursor: str | None,
    page: int | None,
    limit: int,
) -> ProductPage:
    """Synchronous: run it with ``Database.run_read``."""
    path = None
    if filters.category_id is not None:
        path = listing.category_path(conn, filters.category_id)
        if path is None:
            raise UnknownReference("category", filters.category_id, field="category_id")
    if page is not None:
        if cursor is not None:
            raise InvalidInput("give cursor or page, not both", field="page")
        rows, total = listing.offset_page(conn, filters, path=path, page=page, limit=limit)
        return ProductPage(items=[product_of(r) for r in rows], page=page, limit=limit, total=total)
    rows, next_cursor = listing.cursor_page(conn, filters, path=path, cursor=cursor, limit=limit)
    return ProductPage(items=[product_of(r) for r in rows], next_cursor=next_cursor)
