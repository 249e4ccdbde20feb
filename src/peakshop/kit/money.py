"""Exact money: integer cents inside, strings with two decimals outside."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_CENTS = 100_000_000_000  # 1e9 in currency units: anything above is not a real basket


def parse_cents(value: str | int | float | Decimal, *, field: str) -> int:
    """Parse an amount with at most two decimals into cents; raise ValueError naming the problem."""
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a decimal amount")
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"{field} must be a decimal amount like '49.90'") from exc
    if not amount.is_finite():
        raise ValueError(f"{field} must be a finite amount")
    if amount < 0:
        raise ValueError(f"{field} must not be negative")
    if amount > Decimal(MAX_CENTS) / 100:  # before any arithmetic: 1e999999 * 100 overflows
        raise ValueError(f"{field} must be at most {format_cents(MAX_CENTS)}")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{field} must have at most two decimal places")
    result = int(cents)
    if result > MAX_CENTS:
        raise ValueError(f"{field} must be at most {format_cents(MAX_CENTS)}")
    return result


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def percent_of(cents: int, basis_points: int) -> int:
    """``cents * basis_points / 10_000`` rounded half up to the cent (no float in between)."""
    return (cents * basis_points + 5_000) // 10_000
