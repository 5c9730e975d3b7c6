"""The daemon's scheduling maths, free of I/O: when the daemon sweeps, and when each customer
is next due.

A *sweep* is the daemon looking for due customers; ``SYNC_SCHEDULE`` says when sweeps happen (an
interval such as ``15m`` or a five-field cron expression). Each customer carries its own poll
interval: it halves when a check finds new files and doubles when it finds none, between the
sweep gap and ``SYNC_POLL_MAX_INTERVAL``. Whatever the interval, a customer is due early enough
that the next sweep reaches it before ``SYNC_MAX_STALENESS`` has passed since its last
successful check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sync.domain.durations import parse_duration

# How many upcoming fire times of a cron expression are examined to find its longest gap; a
# year of weekly fires, or a few days of minutely ones, is plenty to see the pattern.
_CRON_SAMPLE = 400
# Share of the staleness room a customer's due time may use; the rest absorbs a sweep's queue.
_STALENESS_SAFETY = 0.9


@dataclass(frozen=True, slots=True)
class Cadence:
    """A parsed schedule: the APScheduler trigger and the longest gap between two fires."""

    text: str
    trigger: BaseTrigger
    longest_gap_s: float


def parse_cadence(text: str, timezone: str) -> Cadence:
    """An interval (``15m``, ``90s``) or a cron expression (``*/15 * * * *``).

    Raises ValueError with a message that says what was wrong.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty schedule (write an interval such as 15m, or a cron expression)")
    zone = ZoneInfo(timezone)
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if seconds <= 0:
            raise ValueError(f"{text!r}: an interval must be longer than zero")
        return Cadence(text, IntervalTrigger(seconds=seconds, timezone=zone), seconds)
    if len(text.split()) != 5:
        raise ValueError(
            f"{text!r} is neither an interval (15m, 2h) nor a cron expression of five fields"
        )
    minute, hour, day, month, weekdays = text.split()
    try:
        trigger = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(weekdays),
            timezone=zone,
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron expression ({exc})") from None
    return Cadence(text, trigger, _longest_cron_gap(trigger, zone))


_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler's day names.

    APScheduler 3 counts weekdays from Monday = 0, so ``0 3 * * 0`` would silently fire on
    Mondays; spelling the days out keeps the crontab meaning everyone expects.
    """
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = _weekday_number(step_text, allow_big=True) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, _, high = span.partition("-")
            first, last = _weekday_number(low), _weekday_number(high)
        else:
            first = last = _weekday_number(span)
            if step_text:
                last = 6
        if last == 0 and first > 0:
            last = 7  # "5-0" or "5-7": Friday to Sunday
        if first > last or step < 1:
            raise ValueError(f"day-of-week {part!r} is not a valid range")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_WEEKDAY_NAMES[day] for day in sorted(days))


def _weekday_number(text: str, allow_big: bool = False) -> int:
    if text in _WEEKDAY_NAMES:
        return _WEEKDAY_NAMES.index(text)
    if text.isascii() and text.isdigit() and (allow_big or int(text) <= 7):
        return int(text)
    raise ValueError(f"day-of-week {text!r} is not 0-7 or a day name")


def _longest_cron_gap(trigger: CronTrigger, zone: ZoneInfo) -> float:
    previous: datetime | None = None
    now = datetime(2026, 1, 1, tzinfo=zone)
    longest = 0.0
    for _ in range(_CRON_SAMPLE):
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        if previous is not None:
            longest = max(longest, (fire - previous).total_seconds())
        previous, now = fire, fire + timedelta(microseconds=1)
    if longest <= 0:
        raise ValueError(f"cron expression {trigger} fires at most once")
    return longest


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Bounds of the per-customer poll interval, all in seconds."""

    min_interval: float  # the sweep gap: polling more often than sweeps happen is pointless
    max_interval: float
    max_staleness: float
    # Spread customers whose intervals are equal, so they do not all fall due on one sweep.
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_staleness <= self.min_interval:
            raise ValueError(
                f"SYNC_MAX_STALENESS ({self.max_staleness:g}s) must be longer than the longest "
                f"gap between sweeps of SYNC_SCHEDULE ({self.min_interval:g}s)"
            )
        if self.max_interval < self.min_interval:
            raise ValueError(
                f"SYNC_POLL_MAX_INTERVAL ({self.max_interval:g}s) must be at least the longest "
                f"gap between sweeps of SYNC_SCHEDULE ({self.min_interval:g}s)"
            )


def next_interval(policy: PollPolicy, current: float | None, found_new: bool) -> float:
    """Halve the interval after new files, double it after none, within the policy's bounds."""
    if current is None or current <= 0:
        current = policy.min_interval
    proposed = current / 2 if found_new else current * 2
    return min(policy.max_interval, max(policy.min_interval, proposed))


def next_due(
    policy: PollPolicy,
    now: datetime,
    interval: float,
    last_success: datetime | None,
    spread: float = 0.0,
) -> datetime:
    """When a customer next falls due.

    ``spread`` in [-1, 1] (the caller's random draw) moves the time by up to ``jitter`` of the
    interval. The staleness bound wins over the interval: the customer falls due early enough
    that the sweep reaching it (up to one sweep gap later) still finds it in time, with a tenth
    of the remaining room kept for the sweep's own work.
    """
    due = now + timedelta(seconds=interval * (1 + policy.jitter * max(-1.0, min(1.0, spread))))
    if last_success is not None:
        room = (policy.max_staleness - policy.min_interval) * _STALENESS_SAFETY
        due = min(due, last_success + timedelta(seconds=room))
    return max(due, now)


def retry_due(policy: PollPolicy, now: datetime) -> datetime:
    """A failed check is tried again on the next sweep; its interval does not change."""
    return now + timedelta(seconds=policy.min_interval)


# The first retry of a sweep the breaker stopped; each further outage doubles it.
OUTAGE_FIRST_RETRY_S = 60.0


def outage_backoff(outages: int, cap_s: float) -> float:
    """How long after its ``outages``-th sweep in a row stopped by the circuit breaker the
    daemon sweeps again: 1 min, 2, 4, … up to ``cap_s`` (SYNC_OUTAGE_BACKOFF_MAX)."""
    if outages < 1:
        raise ValueError("outages counts from 1")
    return min(cap_s, OUTAGE_FIRST_RETRY_S * 2.0 ** min(outages - 1, 30))


def lease_renew_every(lease_ttl: float) -> float:
    """Leases are renewed three times per lifetime, so one missed renewal does not lose them."""
    return lease_ttl / 3


def rate_share(rate_limit: float, live_workers: int) -> float:
    """Each live worker's part of the app's rate limit: the budget belongs to the app."""
    return rate_limit / max(1, live_workers)


@dataclass(frozen=True, slots=True)
class DaemonSchedule:
    """The daemon's schedules and poll bounds, parsed once when a daemon starts."""

    sweep: Cadence
    full: Cadence | None  # None: full reconciles are off
    policy: PollPolicy


def parse_daemon_schedule(
    sweep: str,
    full: str | None,
    timezone: str,
    *,
    poll_max_interval: float,
    max_staleness: float,
) -> DaemonSchedule:
    """``SYNC_SCHEDULE``, ``SYNC_FULL_SCHEDULE`` (None when off) and the poll bounds, checked
    against each other. Raises ValueError whose message names the setting at fault."""
    sweep_cadence = _parse_setting("SYNC_SCHEDULE", sweep, timezone)
    full_cadence = None if full is None else _parse_setting("SYNC_FULL_SCHEDULE", full, timezone)
    policy = PollPolicy(
        min_interval=sweep_cadence.longest_gap_s,
        max_interval=poll_max_interval,
        max_staleness=max_staleness,
    )
    return DaemonSchedule(sweep_cadence, full_cadence, policy)


def _parse_setting(name: str, text: str, timezone: str) -> Cadence:
    try:
        return parse_cadence(text, timezone)
    except ValueError as exc:
        raise ValueError(f"setting {name}: {exc}") from None
