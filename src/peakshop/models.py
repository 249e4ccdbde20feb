"""Imports every domain's tables so that ``db.metadata`` is complete (Alembic, tests)."""

from peakshop.coupons import models as coupons_models
from peakshop.inventory import models as inventory_models
from peakshop.jobs import models as jobs_models
from peakshop.orders import models as orders_models

__all__ = ["coupons_models", "inventory_models", "jobs_models", "orders_models"]
