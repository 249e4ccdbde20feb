"""catalog: sellers, categories, product details; the audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 22:19:09.987072
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("job_id", name=op.f("uq_audit_log_job_id")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_subject_id", ["subject", "id"], unique=False)

    op.create_table(
        "categories",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("path", sa.String(length=1000), server_default="/", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["categories.id"], name=op.f("fk_categories_parent_id_categories")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_categories")),
    )
    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.create_index("ix_categories_parent", ["parent_id"], unique=False)
        batch_op.create_index("ix_categories_path", ["path"], unique=False)

    op.create_table(
        "sellers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sellers")),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("currency", sa.String(length=3), server_default="EUR", nullable=False)
        )
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="active", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "seller_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "category_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("image_urls", sa.JSON(), server_default="[]", nullable=False))
        batch_op.create_index(
            "ix_products_category_status_id", ["category_id", "status", "id"], unique=False
        )
        batch_op.create_index(
            "ix_products_seller_status_id", ["seller_id", "status", "id"], unique=False
        )
        batch_op.create_index("ix_products_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "ix_products_status_price_id", ["status", "price_cents", "id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_products_seller_id_sellers"), "sellers", ["seller_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_products_category_id_categories"), "categories", ["category_id"], ["id"]
        )
        batch_op.create_check_constraint("status", "status IN ('active', 'draft', 'archived')")


def downgrade() -> None:
    op.drop_table("audit_log")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_constraint("ck_products_status", type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_products_category_id_categories"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("fk_products_seller_id_sellers"), type_="foreignkey")
        batch_op.drop_index("ix_products_status_price_id")
        batch_op.drop_index("ix_products_status_id")
        batch_op.drop_index("ix_products_seller_status_id")
        batch_op.drop_index("ix_products_category_status_id")
        batch_op.drop_column("image_urls")
        batch_op.drop_column("category_id")
        batch_op.drop_column("seller_id")
        batch_op.drop_column("status")
        batch_op.drop_column("currency")
        batch_op.drop_column("description")

    op.drop_table("sellers")
    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.drop_index("ix_categories_path")
        batch_op.drop_index("ix_categories_parent")

    op.drop_table("categories")
