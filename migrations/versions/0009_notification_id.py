"""notifications_sent keyed by the order's notification, not by its job

A notification job now covers every order of one confirmation, so what a send is recorded
against is the order's notification id. Rows written before keep their meaning: a job's id
was then derived from its one order exactly as the notification id is now.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications_sent", schema=None) as batch_op:
        batch_op.alter_column("job_id", new_column_name="notification_id")


def downgrade() -> None:
    with op.batch_alter_table("notifications_sent", schema=None) as batch_op:
        batch_op.alter_column("notification_id", new_column_name="job_id")
