"""China time. The API writes every instant as local time in Asia/Shanghai (UTC+8, no daylight
saving), ``YYYY-MM-DD HH:MM:SS``; the mirror stores UTC and shows China time to people."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

CHINA_OFFSET = timedelta(hours=8)
CHINA_TZ = timezone(CHINA_OFFSET, "Asia/Shanghai")
_API_FORM = "%Y-%m-%d %H:%M:%S"
# Hours stop at 23: a newer fromisoformat reads "24:00:00" as the next midnight.
_CHINA_TIME = re.compile(r"\d{4}-\d{2}-\d{2} (?:[01]\d|2[0-3]):\d{2}:\d{2}\Z", re.ASCII)


def parse_china_time(value: object) -> datetime | None:
    """The API's ``YYYY-MM-DD HH:MM:SS`` (China time) as an aware UTC instant, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        # The form the API sends, checked by the pattern and read by fromisoformat (C code,
        # which alone would accept other forms too): many times cheaper than strptime.
        if _CHINA_TIME.match(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC) - CHINA_OFFSET
        # Other spellings strptime accepts (single-digit fields, Unicode digits).
        local = datetime.strptime(text, _API_FORM)
        return local.replace(tzinfo=CHINA_TZ).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1, shifted to UTC, is year 0
        return None


def format_china_time(instant: datetime | None) -> str:
    """An aware instant in the API's form, in China time; '' for None."""
    return instant.astimezone(CHINA_TZ).strftime(_API_FORM) if instant is not None else ""
