"""The record id scheme of the Tanmarket API, so simulated ids look and sort like real ones.

A real id is ``ms_since(2015-01-01 00:00:00 +08:00) * 2048 + seq``: the vendor's own samples
(462821966907328 ↔ ``2022-02-28 14:14:48``) decode exactly this way. Customer, sales and operator
ids come from the same generator, at earlier instants.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sync.domain.chinatime import CHINA_TZ, format_china_time

ID_EPOCH = datetime(2015, 1, 1, tzinfo=CHINA_TZ)
ID_SEQ_RANGE = 2048
ID_UNITS_PER_SECOND = 1000 * ID_SEQ_RANGE  # 2_048_000
_MS = timedelta(milliseconds=1)


def ms_since_epoch(instant: datetime) -> int:
    """Whole milliseconds from ``ID_EPOCH`` to an aware ``instant`` (floored)."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return (instant - ID_EPOCH) // _MS


def id_from_ms(ms: int, seq: int) -> int:
    """The id for millisecond ``ms`` (since ``ID_EPOCH``) and sequence number ``seq``."""
    if ms < 0:
        raise ValueError(f"ms {ms} is before the id epoch")
    if not 0 <= seq < ID_SEQ_RANGE:
        raise ValueError(f"seq {seq} is outside 0..{ID_SEQ_RANGE - 1}")
    return ms * ID_SEQ_RANGE + seq


def make_id(instant: datetime, seq: int) -> int:
    """The id a record created at ``instant`` with sequence number ``seq`` gets."""
    return id_from_ms(ms_since_epoch(instant), seq)


def id_time(record_id: int) -> datetime:
    """The instant encoded in an id, in China time (millisecond precision)."""
    return ID_EPOCH + (record_id // ID_SEQ_RANGE) * _MS


def id_create_time(record_id: int) -> str:
    """The ``createTime`` text that goes with an id."""
    return format_china_time(id_time(record_id))
