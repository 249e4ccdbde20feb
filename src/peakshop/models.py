"""Imports every domain's tables so that ``db.metadata`` is complete (Alembic, tests)."""

from peakshop.analytics import models as analytics_models
from peakshop.catalog import models as catalog_models
from peakshop.coupons import models as coupons_models
from peakshop.inventory import models as inventory_models
from peakshop.jobs import models as jobs_models
from peakshop.orders import models as orders_models

__all__ = [
    "analytics_models",
    "catalog_models",
    "coupons_models",
    "inventory_models",
    "jobs_models",
    "orders_models",
]
