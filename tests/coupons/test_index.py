"""The in-memory coupon index: its safety-net refresh reloads only when the table changed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from peakshop.config import Settings
from peakshop.coupons.index import CouponIndex
from peakshop.coupons.models import coupons
from peakshop.db import Database
from peakshop.state.memory import MemoryState
from tests.coupons.support import Client, create_coupon, patch_coupon
from tests.fixtures.factories import time_window_coupon


async def _index(settings: Settings) -> tuple[CouponIndex, Database]:
    db = Database(settings)
    index = CouponIndex(db=db, broadcast=MemoryState(db).broadcast, refresh_seconds=3600)
    await index.load_all()
    return index, db


async def test_refresh_reloads_only_after_a_change(settings: Settings, client: Client) -> None:
    created: dict[str, Any] = await create_coupon(client, time_window_coupon(code="FPRINT-1"))
    index, db = await _index(settings)
    try:
        assert index.get("FPRINT-1") is not None
        assert await index.refresh_if_changed() is False  # nothing changed: no reload

        # A change whose broadcast was lost: only the fingerprint can notice it.
        await patch_coupon(client, created["code"], {"status": "inactive"})
        assert index.get("FPRINT-1").active is True  # type: ignore[union-attr]
        assert await index.refresh_if_changed() is True
        assert index.get("FPRINT-1").active is False  # type: ignore[union-attr]
        assert await index.refresh_if_changed() is False

        await create_coupon(client, time_window_coupon(code="FPRINT-2"))
        assert await index.refresh_if_changed() is True
        assert index.get("FPRINT-2") is not None
    finally:
        await db.dispose()


async def test_every_change_bumps_the_revision(settings: Settings, client: Client) -> None:
    await create_coupon(client, time_window_coupon(code="FPRINT-3"))
    for value in ("5", "6", "5"):  # back to an earlier value still counts as a change
        await patch_coupon(client, "FPRINT-3", {"discount_value": value})
    db = Database(settings)
    try:
        async with db.read() as conn:
            revision = await conn.scalar(
                sa.select(coupons.c.revision).where(coupons.c.code == "FPRINT-3")
            )
    finally:
        await db.dispose()
    assert revision == 3
