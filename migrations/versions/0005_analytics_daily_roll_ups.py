"""analytics daily roll-ups

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 22:23:20.856161
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupon_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("coupon_id", sa.BigInteger(), nullable=False),
        sa.Column("redemptions", sa.BigInteger(), nullable=False),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("order_total_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "coupon_id", name=op.f("pk_coupon_daily")),
    )
    op.create_table(
        "product_sales_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "product_id", name=op.f("pk_product_sales_daily")),
    )
    op.create_table(
        "sales_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("orders", sa.BigInteger(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("rolled_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_sales_daily")),
    )
    with op.batch_alter_table("coupon_usage", schema=None) as batch_op:
        batch_op.create_index("ix_coupon_usage_used_at", ["used_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("coupon_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_usage_used_at")

    op.drop_table("sales_daily")
    op.drop_table("product_sales_daily")
    op.drop_table("coupon_daily")
