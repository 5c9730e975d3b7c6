"""The paging state machine for one customer's file list. I/O-free.

The list comes newest first; the next page is asked with ``lastId`` = the smallest id received.
A pass walks down from the top of the list until one of: an empty or short page (the end), a page
that reaches the pass's floor (an incremental pass stops a lookback below what is complete), or a
server that does not move the cursor (an error: the pass stops where it is).

``CustomerCursor`` is what is persisted per customer, in the same transaction as each page's rows:
- ``high_water_id``: every record at or below it was mirrored by a completed pass;
- the ``pass_*`` fields, while a pass is under way: where it resumes (``pass_cursor_id``), the top
  it started from (``pass_top_id``), where it may stop (``pass_floor_id``; None walks to the end),
  when it started and whether it is a full reconcile (which marks vanished records at the end).
The high-water mark moves only when a pass completes, to the pass's top, so a crash at any instant
leaves at most the in-flight page to fetch again and never a gap below the mark.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime


class PassMode(enum.StrEnum):
    INCREMENTAL = "incremental"  # `run`: down to high-water minus lookback
    BACKFILL = "backfill"  # walk the whole list, resuming an interrupted walk
    FULL = "full"  # walk the whole list and mark what vanished upstream


@dataclass(frozen=True, slots=True)
class CustomerCursor:
    high_water_id: int | None = None
    pass_cursor_id: int | None = None
    pass_top_id: int | None = None
    pass_floor_id: int | None = None
    pass_started_at: datetime | None = None
    pass_full: bool = False

    @property
    def in_pass(self) -> bool:
        return self.pass_started_at is not None


class PageVerdict(enum.StrEnum):
    CONTINUE = "continue"
    COMPLETE = "complete"
    STUCK = "stuck"  # the server did not move the cursor: stop, keep the resume point


@dataclass(frozen=True, slots=True)
class VanishedCheck:
    """A full pass walked the whole list: this customer's records not seen since ``seen_since``
    (the pass's start) are gone upstream. Records that arrived during the pass were seen after
    it started, so they are safe whatever their id."""

    seen_since: datetime


@dataclass(frozen=True, slots=True)
class PageStep:
    """What one page means: the cursor to persist with its rows, and whether to go on."""

    verdict: PageVerdict
    cursor: CustomerCursor
    detail: str = ""
    vanished: VanishedCheck | None = None


def begin_pass(
    cursor: CustomerCursor, mode: PassMode, lookback_ids: int, now: datetime
) -> CustomerCursor:
    """The cursor at the start of a pass: resume an interrupted one, or start from the top."""
    if cursor.in_pass:
        # Walking deeper than the interrupted pass planned is always safe; a resumed pass only
        # upgrades to a full reconcile, since everything above its resume point was seen after
        # it started.
        floor = cursor.pass_floor_id if mode is PassMode.INCREMENTAL else None
        full = cursor.pass_full or mode is PassMode.FULL
        return replace(cursor, pass_floor_id=floor, pass_full=full)
    floor = None
    if mode is PassMode.INCREMENTAL and cursor.high_water_id is not None:
        floor = cursor.high_water_id - lookback_ids
    return replace(
        cursor,
        pass_cursor_id=None,
        pass_top_id=None,
        pass_floor_id=floor,
        pass_started_at=now,
        pass_full=mode is PassMode.FULL,
    )


def next_last_id(cursor: CustomerCursor) -> int | None:
    """The ``lastId`` to request: None asks for the first (newest) page."""
    return cursor.pass_cursor_id


def step(
    cursor: CustomerCursor,
    page_ids: list[int],
    item_count: int,
    *,
    requested_size: int,
    reported_size: int | None,
    stop_on_short_page: bool = True,
) -> PageStep:
    """Advance ``cursor`` (which must be in a pass) over one page.

    ``page_ids`` are the usable record ids of the page; ``item_count`` counts every item,
    rejected ones included, since the server counted them towards the page size.
    """
    asked = cursor.pass_cursor_id
    top = cursor.pass_top_id
    if asked is None and page_ids:
        # Only the first page sets the top. An id a later page returns at or above lastId was
        # not reached by walking down, so letting it raise the mark could skip unread records.
        top = max(page_ids) if top is None else max(top, max(page_ids))
    effective_size = requested_size
    if reported_size is not None and reported_size < requested_size:
        effective_size = reported_size  # the server caps page size below what we asked
    if item_count == 0 or (stop_on_short_page and item_count < effective_size):
        return _complete(cursor, top, "end of list")

    below = [i for i in page_ids if asked is None or i < asked]
    if not below:
        detail = (
            "a full page without a usable record id"
            if not page_ids
            else f"the server did not move the cursor below lastId={asked}"
        )
        return PageStep(PageVerdict.STUCK, replace(cursor, pass_top_id=top), detail)
    lowest = min(below)
    if cursor.pass_floor_id is not None and lowest <= cursor.pass_floor_id:
        return _complete(cursor, top, "reached the lookback floor")
    return PageStep(PageVerdict.CONTINUE, replace(cursor, pass_cursor_id=lowest, pass_top_id=top))


def _complete(cursor: CustomerCursor, top: int | None, detail: str) -> PageStep:
    high_water = cursor.high_water_id
    if top is not None:
        high_water = top if high_water is None else max(high_water, top)
    vanished = None
    if cursor.pass_full and cursor.pass_started_at is not None:
        vanished = VanishedCheck(seen_since=cursor.pass_started_at)
    return PageStep(
        PageVerdict.COMPLETE, CustomerCursor(high_water_id=high_water), detail, vanished
    )
