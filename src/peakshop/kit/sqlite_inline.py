"""Short SQLite reads on the event loop's own thread, with a time budget.

Why: a catalog page read through a worker thread cost ~1.4 ms of CPU with one thread and
~2.7 ms with the six of asyncio's default executor, against ~0.8 ms for the same read on
the calling thread (``python benchmarks/sqlite_read_paths.py``). The sqlite3 driver
releases and retakes the GIL around every step, and each thread that wants it back wakes
the others: under load the hand-offs cost more than the query.

The risk of reading on the loop is a read that runs long (a narrow filter that walks much
of an index, a deep page): every request would wait for it. So the read gets a budget.
SQLite calls a progress handler every ``CHECK_EVERY`` virtual-machine instructions; once
the budget is spent it returns non-zero, SQLite interrupts the statement, and the caller
runs the read again in a thread (``OVER_BUDGET``); the same when the file is locked. The
transaction is read-only: nothing is left half-done.

Written by hand: neither SQLAlchemy nor the sqlite3 module offer a statement time limit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import sqlalchemy as sa

T = TypeVar("T")

CHECK_EVERY = 2_000  # VM instructions between two looks at the clock (~70 us of a recursive count)


class OverBudget:
    """What ``read_within`` returns when the read was interrupted (``OVER_BUDGET``)."""


OVER_BUDGET: Final = OverBudget()


def read_within(
    engine: sa.Engine, read: Callable[[sa.Connection], T], *, budget_seconds: float
) -> T | OverBudget:
    """``read(conn)`` in a read transaction on this thread, or ``OVER_BUDGET`` if SQLite
    was still working on it after ``budget_seconds``."""
    deadline = time.perf_counter() + budget_seconds

    def spent() -> int:
        return 1 if time.perf_counter() > deadline else 0

    try:
        with engine.connect() as conn:  # opening a connection may meet the lock too
            driver: Any = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.set_progress_handler(spent, CHECK_EVERY)
            try:
                return read(conn)
            finally:
                driver.set_progress_handler(None, 0)
    except sa.exc.OperationalError as exc:
        # Interrupted at the budget, or refused by a lock (the engine's busy timeout is
        # meant to be short): either way the read is worth waiting for off the loop.
        if "interrupted" in str(exc.orig) or is_locked(exc):
            return OVER_BUDGET
        raise


def is_locked(exc: sa.exc.OperationalError) -> bool:
    """SQLite refused the statement for a lock held elsewhere (past the busy timeout)."""
    return "database is locked" in str(exc.orig)
