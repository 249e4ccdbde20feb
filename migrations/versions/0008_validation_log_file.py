"""validation log in its own SQLite file; one index fewer

On SQLite the validation log moves to ``<name>.logs.db`` beside the shop's file (see
``peakshop.db.Database``): its rows are copied there (ids kept, so a copy interrupted and run
again inserts nothing twice) and the table is dropped from the shop's file. On both databases
the ``(code, created_at)`` index goes: the stats of one code read its rows through
``(code, id)`` like the listing does, and every index of this table costs each validation a
page write at random.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from peakshop.coupons.models import validation_logs
from peakshop.coupons.repository import create_validation_log_table
from peakshop.db import log_database_path, sqlite_log_engine

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 50_000
COLUMNS = [column.name for column in validation_logs.columns]


def _log_engine(bind: sa.Connection) -> sa.Engine:
    main = next(row[2] for row in bind.exec_driver_sql("PRAGMA database_list") if row[1] == "main")
    return sqlite_log_engine(log_database_path(main), busy_timeout_ms=30_000, cache_mib=64)


def _copy(source: sa.Connection, target: sa.Connection, *, replace: bool) -> None:
    select = f"SELECT {', '.join(COLUMNS)} FROM validation_logs WHERE id > ? ORDER BY id LIMIT ?"
    insert = (
        f"INSERT {'OR IGNORE ' if replace else ''}INTO validation_logs ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in COLUMNS)})"
    )
    last = 0
    while rows := source.exec_driver_sql(select, (last, CHUNK)).fetchall():
        target.exec_driver_sql(insert, [tuple(row) for row in rows])
        last = rows[-1][0]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_index("ix_validation_logs_code_created", table_name="validation_logs")
        return
    engine = _log_engine(bind)
    try:
        with engine.begin() as log:
            create_validation_log_table(log)
            _copy(bind, log, replace=True)
    finally:
        engine.dispose()
    op.drop_table("validation_logs")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.create_index(
            "ix_validation_logs_code_created", "validation_logs", ["code", "created_at"]
        )
        return
    validation_logs.create(bind)
    op.create_index("ix_validation_logs_code_created", "validation_logs", ["code", "created_at"])
    engine = _log_engine(bind)
    try:
        with engine.begin() as log:
            _copy(log, bind, replace=False)
            log.exec_driver_sql("DELETE FROM validation_logs")
    finally:
        engine.dispose()
