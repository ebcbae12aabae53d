"""Dollar amounts as people read them."""

from __future__ import annotations

import math


def format_usd(amount: float | None) -> str:
    """Cents for a dollar or more; below that two significant digits, so that small runs (a
    fraction of a cent per item) still tell apart: $0.0086, $0.000024."""
    if amount is None:
        return "no price"
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount < 1e-8:
        return "< $0.00000001"
    decimals = max(2, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"
