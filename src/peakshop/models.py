"""Imports every domain's tables so that ``db.metadata`` is complete (Alembic, tests)."""

from peakshop.coupons import models as coupons_models

__all__ = ["coupons_models"]
