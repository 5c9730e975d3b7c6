"""The staleness histogram's buckets: how long since each customer's last successful check,
against the freshness bound (SYNC_MAX_STALENESS). Pure.

Four buckets share the time inside the bound and three lie beyond it, so the chart shows at a
glance both how close the mirror runs to its bound and how far past it the worst have gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from sync.domain.durations import format_duration

# Bucket edges as fractions of the bound; the last bucket is open-ended.
_FRACTIONS = (0.25, 0.5, 0.75, 1.0, 2.0, 4.0)


@dataclass(frozen=True, slots=True)
class StalenessBucket:
    label: str
    high_s: float | None  # exclusive (the lower end is the bucket before's); None: no end
    over_bound: bool


def staleness_buckets(max_staleness_s: float) -> list[StalenessBucket]:
    """The histogram's buckets for a bound of ``max_staleness_s`` seconds, youngest first."""
    edges = [0.0, *(fraction * max_staleness_s for fraction in _FRACTIONS)]
    buckets = [
        StalenessBucket(
            f"{format_duration(low)}–{format_duration(high)}", high, low >= max_staleness_s
        )
        for low, high in pairwise(edges)
    ]
    buckets.append(StalenessBucket(f"over {format_duration(edges[-1])}", None, True))
    return buckets
