"""Tables of the catalog: sellers, the category tree, products.

The products table also carries the stock ledger that inventory and flash sales move
(``initial_stock = available + reserved + sold + allocated``, a CHECK constraint): one row
per product, so a listing reads stock with the product and no join.
"""

from __future__ import annotations

import sqlalchemy as sa

from peakshop.db import BigId, Timestamp, metadata

sellers = sa.Table(
    "sellers",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("parent_id", BigId, sa.ForeignKey("categories.id"), nullable=True),
    # Materialized path "/1/7/42/": a category's descendants are one prefix match.
    sa.Column("path", sa.String(1000), nullable=False, server_default="/"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_categories_path", "path"),
    sa.Index("ix_categories_parent", "parent_id"),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("price_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False, server_default="EUR"),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("seller_id", BigId, sa.ForeignKey("sellers.id"), nullable=True),
    sa.Column("category_id", BigId, sa.ForeignKey("categories.id"), nullable=True),
    sa.Column("image_urls", sa.JSON, nullable=False, server_default="[]"),
    # initial_stock = available + reserved + sold + allocated (to flash sales), always.
    sa.Column("initial_stock", sa.BigInteger, nullable=False),
    sa.Column("available", sa.BigInteger, nullable=False),  # the API's current_stock
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("sold", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("allocated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.CheckConstraint(
        "available >= 0 AND reserved >= 0 AND sold >= 0 AND allocated >= 0 "
        "AND available + reserved + sold + allocated = initial_stock",
        name="stock_conserved",
    ),
    sa.CheckConstraint("price_cents >= 0", name="price_not_negative"),
    sa.CheckConstraint("status IN ('active', 'draft', 'archived')", name="status"),
    # The listing's orders (newest = id, price), each under the common filters.
    sa.Index("ix_products_status_id", "status", "id"),
    sa.Index("ix_products_status_price_id", "status", "price_cents", "id"),
    sa.Index("ix_products_category_status_id", "category_id", "status", "id"),
    sa.Index("ix_products_seller_status_id", "seller_id", "status", "id"),
)
