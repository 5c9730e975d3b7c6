"""Instants in the form each driver takes them, for statements run as driver SQL (the hot
writes skip SQLAlchemy's per-row type processing, so they must store exactly what it would)."""

from __future__ import annotations

from datetime import UTC, datetime


def sqlite_stamp(value: datetime) -> str:
    """Exactly the text SQLAlchemy stores for UTCDateTime on SQLite (naive UTC, microseconds
    always written), so comparisons in SQL and reads through the ORM agree with other rows."""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    # isoformat is C code; its 26 characters before the "+00:00" are SQLAlchemy's form.
    return utc.isoformat(" ", "microseconds")[:26]


def postgres_stamp(value: datetime) -> datetime:
    return value.astimezone(UTC)
