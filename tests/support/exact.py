"""Exact-rational reference arithmetic, independent of the decimal module the app uses."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction


def half_even_8(value: Fraction) -> Decimal:
    """Round an exact rational to 8 places, ties to even, with integer arithmetic only."""
    scaled = value * 10**8
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return Decimal(floor).scaleb(-8)
