"""Numbers as models write them ("$1,234.50", "-12.0", "7.") reduced to one canonical spelling.

Canonical strings let answers be counted in a majority vote and written to datasets as they are;
Decimal (never float) keeps "0.1 + 0.2"-style rounding out of grading.
"""

from __future__ import annotations

import re
from decimal import Decimal

# A minus is a sign only where it cannot be subtraction ("5-3" holds 5 and 3, "= -2" holds -2).
# Thousands separators only in groups of three, so "3,4,5" stays three numbers.
_NUMBER = re.compile(r"(?:(?<![\w)\]])-)?\$?(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_WHOLE_NUMBER = re.compile(r"-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")


def _plain(text: str) -> str:
    """Unicode minus and LaTeX's "1{,}000" are common in model output."""
    return text.replace("\u2212", "-").replace("{,}", ",")


def to_decimal(text: str) -> Decimal | None:
    """The number a whole string spells, ignoring currency signs, separators, a final period."""
    cleaned = _plain(text).replace("\\$", "").replace("$", "").strip().rstrip(".").strip()
    if not _WHOLE_NUMBER.fullmatch(cleaned):
        return None
    return Decimal(cleaned.replace(",", ""))


def canonical(number: Decimal) -> str:
    """'12.0' -> '12', '12.50' -> '12.5', '-0' -> '0'."""
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def last_number(text: str) -> str | None:
    """The last number in free text, canonical; how arithmetic and GSM8K responses are read."""
    matches = _NUMBER.findall(_plain(text))
    if not matches:
        return None
    number = to_decimal(matches[-1])
    return None if number is None else canonical(number)


def numbers_equal(a: str, b: str) -> bool:
    x, y = to_decimal(a), to_decimal(b)
    return x is not None and y is not None and x == y
