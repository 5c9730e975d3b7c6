"""How far a file's real length may be from the record's size text (pure).

The API shows sizes as rounded text (``29.9KB``, ``1.2MB``, ``812B``). The text is taken to mean
any length that rounds to it: half a unit of its last digit either way. Whether a ``KB`` is 1024
or 1000 bytes is not documented; both readings are accepted, so only a length that no reading
of the text allows (an error page in place of a 3 MB scan) is a contradiction.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sync.domain.records import size_parts


def size_bounds(text: str | None) -> tuple[int, int] | None:
    """The smallest and largest byte count the text can stand for; None when it says nothing."""
    parts = size_parts(text)
    if parts is None:
        return None
    number, power = parts
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    exponent = value.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    half_step = Decimal(5) * Decimal(10) ** -(decimals + 1)
    low_units, high_units = max(Decimal(0), value - half_step), value + half_step
    if power == 0:
        return int(low_units.to_integral_value(rounding="ROUND_CEILING")), int(
            high_units.to_integral_value(rounding="ROUND_FLOOR")
        )
    low = min(low_units * 1000**power, low_units * 1024**power)
    high = max(high_units * 1000**power, high_units * 1024**power)
    return int(low), int(high) + 1


def contradicts(text: str | None, length: int) -> bool:
    """Whether ``length`` bytes cannot be what the size text describes."""
    bounds = size_bounds(text)
    return bounds is not None and not bounds[0] <= length <= bounds[1]
