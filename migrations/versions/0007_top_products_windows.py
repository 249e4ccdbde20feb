"""top products windows

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 23:21:43.378361
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "product_sales_window",
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("window_days", "product_id", name=op.f("pk_product_sales_window")),
    )
    with op.batch_alter_table("product_sales_window", schema=None) as batch_op:
        batch_op.create_index(
            "ix_product_sales_window_rank", ["window_days", "revenue_cents", "units"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("product_sales_window", schema=None) as batch_op:
        batch_op.drop_index("ix_product_sales_window_rank")

    op.drop_table("product_sales_window")
