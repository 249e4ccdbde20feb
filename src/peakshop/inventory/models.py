"""Tables of flash sales (the stock columns of products are in the catalog's products
table). Conservation is a CHECK constraint: the database itself refuses any statement that
would create or lose a unit, whatever the code does."""

from __future__ import annotations

import sqlalchemy as sa

from peakshop.catalog.models import products
from peakshop.db import BigId, Timestamp, metadata

__all__ = ["flash_sale_buyers", "flash_sales", "products"]

flash_sales = sa.Table(
    "flash_sales",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("product_id", BigId, sa.ForeignKey("products.id"), nullable=False, index=True),
    sa.Column("price_cents", sa.BigInteger, nullable=False),
    # quantity = remaining + reserved + sold, always; taken from the product's stock.
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("sold", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("per_user_limit", sa.Integer, nullable=False),
    sa.Column("starts_at", Timestamp, nullable=False),
    sa.Column("ends_at", Timestamp, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.CheckConstraint(
        "remaining >= 0 AND reserved >= 0 AND sold >= 0 AND remaining + reserved + sold = quantity",
        name="stock_conserved",
    ),
    sa.CheckConstraint("per_user_limit >= 1", name="per_user_limit_positive"),
)

# Units each buyer holds in a sale (reserved or sold): the per-user cap, enforced by the
# system of record as a conditional upsert, behind the hot store's own check.
flash_sale_buyers = sa.Table(
    "flash_sale_buyers",
    metadata,
    sa.Column("sale_id", BigId, sa.ForeignKey("flash_sales.id"), primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
)
