"""Coupons: rules, validation (the hottest path), atomic redemption, validation log, stats."""
