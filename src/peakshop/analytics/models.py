"""The daily roll-ups. A day is a UTC calendar day; only confirmed orders count (a later
cancellation is picked up when the recent days are rolled up again)."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from peakshop.db import Timestamp, metadata

sales_daily = sa.Table(
    "sales_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("orders", sa.BigInteger, nullable=False),
    sa.Column("revenue_cents", sa.BigInteger, nullable=False),
    sa.Column("discount_cents", sa.BigInteger, nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("rolled_up_at", Timestamp, nullable=False),
)

product_sales_daily = sa.Table(
    "product_sales_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("product_id", sa.BigInteger, primary_key=True),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("revenue_cents", sa.BigInteger, nullable=False),
)

coupon_daily = sa.Table(
    "coupon_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("coupon_id", sa.BigInteger, primary_key=True),
    sa.Column("redemptions", sa.BigInteger, nullable=False),
    sa.Column("discount_cents", sa.BigInteger, nullable=False),
    sa.Column("order_total_cents", sa.BigInteger, nullable=False),
)

WINDOWS = (7, 30, 90, 365)  # days, today included: the ranges top-products answers fast


def window_ranges(last: date) -> list[tuple[int, date]]:
    """(window, its first finished day) of each window whose finished days end on ``last``
    (yesterday): a window of N days is N - 1 finished days and today."""
    return [(window, last - timedelta(days=window - 2)) for window in WINDOWS]


# Top products over the usual ranges: product totals over the finished days of the last
# ``window_days`` days (today excluded, it is added live), ending on ``last_day``.
product_sales_window = sa.Table(
    "product_sales_window",
    metadata,
    sa.Column("window_days", sa.Integer, primary_key=True),
    sa.Column("product_id", sa.BigInteger, primary_key=True),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("revenue_cents", sa.BigInteger, nullable=False),
    sa.Index("ix_product_sales_window_rank", "window_days", "revenue_cents", "units"),
)
