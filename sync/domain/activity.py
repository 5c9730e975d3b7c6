"""What the runs did over time, for the console's charts: passes, records written and the
request rate per hour or per day. Pure: run rows in, one bucket per step out.

A run's requests are counted at its end (``sync_runs.requests``), so a run is spread evenly
over the time it took: a two-hour backfill adds to both hours, not only the one it started in.
Days are China-local days (UTC+8, no daylight saving), the days people there read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync.domain.chinatime import CHINA_OFFSET

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RunSample:
    """The parts of a ``sync_runs`` row the charts use."""

    started_at: datetime
    finished_at: datetime | None  # None while running
    status: str
    records_new: int
    records_updated: int
    requests: int


@dataclass(slots=True)
class Bucket:
    start: datetime
    end: datetime
    passes: dict[str, int] = field(default_factory=dict)  # runs started here, by status
    records_new: int = 0
    records_updated: int = 0
    requests: float = 0.0  # the share of runs' requests that fell in this bucket
    seconds: float = 0.0  # how much of the bucket has passed (the last one is under way)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def bucket_starts(now: datetime, step: timedelta, count: int) -> list[datetime]:
    """The starts of the ``count`` buckets of ``step`` ending with the one ``now`` is in,
    aligned to whole hours, or to China-local midnight for days."""
    shift = CHINA_OFFSET if step >= DAY else timedelta(0)
    local = now + shift
    epoch = datetime(2000, 1, 1, tzinfo=now.tzinfo)
    whole = (local - epoch) // step
    current = epoch + whole * step - shift
    return [current - step * back for back in range(count - 1, -1, -1)]


def activity(runs: Iterable[RunSample], now: datetime, step: timedelta, count: int) -> list[Bucket]:
    """``count`` buckets of ``step`` up to ``now``: passes by the bucket they started in,
    records and requests spread over each run's duration."""
    buckets = [Bucket(start, start + step) for start in bucket_starts(now, step, count)]
    for bucket in buckets:
        bucket.seconds = max(0.0, (min(bucket.end, now) - bucket.start).total_seconds())
    for run in runs:
        _add_run(buckets, run, now)
    return buckets


def _add_run(buckets: Sequence[Bucket], run: RunSample, now: datetime) -> None:
    for bucket in buckets:
        if bucket.start <= run.started_at < bucket.end:
            bucket.passes[run.status] = bucket.passes.get(run.status, 0) + 1
    end = max(run.finished_at or now, run.started_at)
    span = (end - run.started_at).total_seconds()
    for bucket in buckets:
        if span <= 0:
            share = 1.0 if bucket.start <= run.started_at < bucket.end else 0.0
        else:
            overlap = (min(end, bucket.end) - max(run.started_at, bucket.start)).total_seconds()
            share = max(0.0, overlap) / span
        if share:
            bucket.records_new += round(run.records_new * share)
            bucket.records_updated += round(run.records_updated * share)
            bucket.requests += run.requests * share
