"""Tables of orders. An order's public id is made before it is stored (the hot store admits
flash-sale orders before the system of record sees them); ``seq`` orders and pages them."""

from __future__ import annotations

import sqlalchemy as sa

from peakshop.db import BigId, Timestamp, metadata

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # flash_sale | regular
    sa.Column("flash_sale_id", BigId, sa.ForeignKey("flash_sales.id"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("subtotal_cents", sa.BigInteger, nullable=False),
    sa.Column("discount_cents", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("coupon_code", sa.String(32), nullable=True),
    # Placement is idempotent per (scope, key): the scope is the endpoint ("orders" or
    # "sale:<id>"), the hash is the request's canonical body.
    sa.Column("idempotency_scope", sa.String(40), nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("job_id", sa.String(40), nullable=False),
    sa.Column("failure_reason", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("pay_by", Timestamp, nullable=False),  # pending past this: cancelled by the sweep
    sa.UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_orders_idempotency"),
    sa.CheckConstraint("status IN ('pending', 'confirmed', 'failed', 'cancelled')", name="status"),
    sa.CheckConstraint("kind IN ('flash_sale', 'regular')", name="kind"),
    sa.Index("ix_orders_user_seq", "user_id", "seq"),
    sa.Index("ix_orders_status_pay_by", "status", "pay_by"),
    sa.Index("ix_orders_created_at", "created_at"),
    sa.Index("ix_orders_flash_sale", "flash_sale_id", "status"),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), primary_key=True),
    sa.Column("product_id", BigId, sa.ForeignKey("products.id"), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price_cents", sa.BigInteger, nullable=False),
    sa.CheckConstraint("quantity >= 1", name="quantity_positive"),
)
