"""Instants in the form each driver takes them, for statements run as driver SQL (the hot
writes skip SQLAlchemy's per-row type processing, so they must store exactly what it would)."""

from __future__ import annotations

from datetime import UTC, datetime


def sqlite_stamp(value: datetime) -> str:
    """Exactly the text SQLAlchemy stores for UTCDateTime on SQLite (naive UTC, microseconds
    always written), so comparisons in SQL and reads through the ORM agree with other rows."""
    utc = value.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
    )


def postgres_stamp(value: datetime) -> datetime:
    return value.astimezone(UTC)
