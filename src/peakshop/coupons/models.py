"""Tables of the coupons domain (SQLAlchemy Core: the hot paths do not need the ORM)."""

from __future__ import annotations

import sqlalchemy as sa

from peakshop.db import BigId, Timestamp, metadata

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

coupons = sa.Table(
    "coupons",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(32), nullable=False, unique=True),
    sa.Column("type", sa.String(16), nullable=False),  # user_specific | time_window
    sa.Column("status", sa.String(16), nullable=False),  # active | inactive
    sa.Column("discount_type", sa.String(16), nullable=False),  # percent | fixed
    # percent: basis points (1550 = 15.50 %); fixed: cents.
    sa.Column("discount_value", sa.Integer, nullable=False),
    sa.Column("max_discount_cents", sa.BigInteger, nullable=True),
    sa.Column("min_order_total_cents", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("starts_at", Timestamp, nullable=True),
    sa.Column("ends_at", Timestamp, nullable=True),
    sa.Column("owner_user_id", sa.String(64), nullable=True, index=True),
    sa.Column("usage_limit", sa.Integer, nullable=True),
    sa.Column("per_user_limit", sa.Integer, nullable=True),
    sa.Column("used_count", sa.Integer, nullable=False, server_default="0"),
    # Bumped by every change of the coupon's rules (not by redemptions): count(*) and
    # sum(revision) fingerprint the whole table, so the index's safety-net refresh reloads
    # only when something changed, whatever the writers' clocks say.
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # The database itself refuses a redemption past the global limit, whatever the code does.
    sa.CheckConstraint(
        "used_count >= 0 AND (usage_limit IS NULL OR used_count <= usage_limit)",
        name="used_within_limit",
    ),
    sa.CheckConstraint("type IN ('user_specific', 'time_window')", name="type"),
    sa.CheckConstraint("status IN ('active', 'inactive')", name="status"),
    sa.CheckConstraint("discount_type IN ('percent', 'fixed')", name="discount_type"),
    sa.Index("ix_coupons_status_type_id", "status", "type", "id"),
    sa.Index("ix_coupons_ends_at", "ends_at"),
)

coupon_usage = sa.Table(
    "coupon_usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("coupon_id", sa.Integer, sa.ForeignKey("coupons.id"), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("order_total_cents", sa.BigInteger, nullable=False),
    sa.Column("discount_cents", sa.BigInteger, nullable=False),
    sa.Column("used_at", Timestamp, nullable=False),
    # Redemption is idempotent on (coupon, order): a repeat finds this row.
    sa.UniqueConstraint("coupon_id", "order_id", name="uq_coupon_usage_coupon_order"),
    sa.Index("ix_coupon_usage_coupon_user", "coupon_id", "user_id"),
    sa.Index("ix_coupon_usage_user", "user_id"),
    sa.Index("ix_coupon_usage_used_at", "used_at"),  # the analytics roll-up reads by day
)

# One row per (coupon, user) that has redeemed: the per-user cap is a conditional upsert on it.
coupon_user_usage = sa.Table(
    "coupon_user_usage",
    metadata,
    sa.Column("coupon_id", sa.Integer, sa.ForeignKey("coupons.id"), primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.CheckConstraint("count >= 1", name="count_positive"),
)

validation_logs = sa.Table(
    "validation_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("order_total_cents", sa.BigInteger, nullable=False),
    sa.Column("valid", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("discount_cents", sa.BigInteger, nullable=False),
    sa.Column("latency_us", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_validation_logs_code_id", "code", "id"),
    sa.Index("ix_validation_logs_user_id", "user_id", "id"),
    sa.Index("ix_validation_logs_created", "created_at"),
)
