"""Public ids: a short prefix and 24 random hex digits (96 bits: no collision in practice,
and nothing to guess from one id about another)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
