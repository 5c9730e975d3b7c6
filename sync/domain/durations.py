"""Human durations in settings: ``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ValueError naming the bad text."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        compact = str(text).strip().lower().replace(" ", "")
        if not compact:
            raise ValueError("empty duration")
        try:
            seconds = float(compact)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(compact):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(compact):
                raise ValueError(
                    f"{text!r} is not a duration (write e.g. 90s, 15m, 2h, 1d)"
                ) from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a non-negative finite duration")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` the way people (and ``parse_duration``) write it: ``45s``, ``6h``, ``1d2h``.

    Rounded to whole seconds above a minute and to tenths below; the two largest units only.
    """
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    rest = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts[:2])
