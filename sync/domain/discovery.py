"""The walk of a customer discovery, free of I/O: which search request comes next, and what
each answer means for the walk.

The search endpoint pages with ``pageNo`` over a live list, and the server refuses to page past
an unknown cap (``TANMA_SEARCH_MAX_RESULTS``). So the walk splits the ``createTime`` range into
windows of whole seconds (both ends inclusive, as the API reads them), each small enough that its
``totalCount`` fits under the cap, and pages each window on its own:

- page 1 of a window tells its ``totalCount``. Over the cap, the window is split in proportion
  (into about ``2 × totalCount / cap`` equal parts, at least two) and each part is walked;
- a window of one second that still holds more than the cap is paged as far as the cap allows
  and recorded as a *gap* (bulk imports put thousands of customers in one second);
- a window whose ``totalCount`` changes between its pages, or whose distinct customers do not add
  up to its ``totalCount`` at the end, was changed while it was paged (offset paging then skips or
  repeats customers): it is walked again, as two halves (fewer pages each, so fewer changes land
  while each is paged; a window that fits one page is read in one request, a snapshot). A window
  of one second is walked again whole, at most ``max_rewalks`` times, after which it is
  recorded as an *unstable* gap;
- a full walk also asks for the whole list's ``totalCount`` (no filter) before and after the
  windows: fewer customers found than the smaller of the two means some customers lie outside
  every window (no or an odd ``createTime``), and that is a gap too.

No request asks past the cap: the walk uses a page size that divides the usable part of the cap
(``usable_cap``), and pages only within it.

The walk's state is plain JSON (``to_json`` / ``from_json``) so that it can be committed with
each page of customers: the windows left, and within the current one the next page and the
customers seen so far (at most the cap), so a restored walk goes on with the next page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class GapReason(StrEnum):
    CROWDED_SECOND = "crowded_second"  # more customers in one second than the cap allows
    UNSTABLE = "unstable"  # the window kept changing while it was paged
    OUTSIDE_WINDOWS = "outside_windows"  # the whole list holds more than the windows did


@dataclass(frozen=True, slots=True)
class Window:
    """Seconds since the epoch, both ends inclusive."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends before it starts: {self.start}..{self.end}")

    @property
    def seconds(self) -> int:
        return self.end - self.start + 1

    def split(self, parts: int) -> list[Window]:
        """``parts`` windows of (nearly) equal length covering this one, oldest first."""
        parts = max(1, min(parts, self.seconds))
        bounds = [self.start + (self.seconds * k) // parts for k in range(parts + 1)]
        return [Window(bounds[k], bounds[k + 1] - 1) for k in range(parts)]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One search request: a window (None for the whole list), a 1-based page, a page size."""

    window: Window | None
    page_no: int
    page_size: int

    @property
    def reach(self) -> int:
        """How far into the result list this request pages (what the server's cap limits)."""
        return self.page_no * self.page_size


@dataclass(frozen=True, slots=True)
class Gap:
    """Customers the walk could not be sure to have found: where, how many, why."""

    window: Window | None
    total_count: int
    fetched: int
    reason: GapReason

    def describe(self) -> str:
        where = "the whole list" if self.window is None else f"createTime window {self.window}"
        if self.reason is GapReason.CROWDED_SECOND:
            return (
                f"{where}: {self.total_count} customers in one second, more than the search "
                f"cap; {self.fetched} fetched"
            )
        if self.reason is GapReason.UNSTABLE:
            return f"{where}: kept changing while paged ({self.total_count} customers)"
        return (
            f"{where}: {self.total_count} customers in all, {self.fetched} found in "
            "createTime windows (the rest have no usable createTime)"
        )


def walk_page_size(page_size: int, max_results: int) -> tuple[int, int]:
    """The page size a walk uses and the usable cap: the most results a window may page
    through so that no request reaches past ``max_results``."""
    size = max(1, min(page_size, max_results))
    return size, (max_results // size) * size


class Step(StrEnum):
    """What an answer did to the walk (for logs and tests)."""

    CENSUS = "census"
    NEXT_PAGE = "next_page"
    SPLIT = "split"
    REWALK = "rewalk"
    WINDOW_DONE = "window_done"


@dataclass
class DiscoveryWalk:
    full: bool
    root: Window
    page_size: int
    usable_cap: int
    max_rewalks: int
    pending: list[Window] = field(default_factory=list)  # a stack: the last is walked next
    current: Window | None = None
    attempts: int = 0  # re-walks of the current window so far
    census_before: int | None = None
    census_after: int | None = None
    windows_done: int = 0
    windows_split: int = 0
    rewalks: int = 0
    found_total: int = 0  # the totalCounts of the windows walked to their end
    gaps: list[Gap] = field(default_factory=list)
    # Progress within the current window.
    page_no: int = 1
    expected: int | None = None
    last_page: int = 1
    crowded: bool = False
    seen: set[str] = field(default_factory=set)

    @classmethod
    def plan(
        cls, root: Window, *, full: bool, page_size: int, max_results: int, max_rewalks: int
    ) -> DiscoveryWalk:
        size, usable = walk_page_size(page_size, max_results)
        return cls(
            full=full,
            root=root,
            page_size=size,
            usable_cap=usable,
            max_rewalks=max_rewalks,
            pending=[root],
        )

    # -- requests --------------------------------------------------------------------------

    def next_query(self) -> SearchQuery | None:
        """The next request, or None when the walk is over."""
        # The census needs only the whole list's totalCount: one item per page will do.
        if self.full and self.census_before is None:
            return SearchQuery(None, 1, 1)
        if self.current is None and self.pending:
            self._begin(self.pending.pop())
        if self.current is not None:
            return SearchQuery(self.current, self.page_no, self.page_size)
        if self.full and self.census_after is None:
            return SearchQuery(None, 1, 1)
        return None

    @property
    def done(self) -> bool:
        return self.next_query() is None

    def _begin(self, window: Window) -> None:
        self.current = window
        self._restart_window()

    def _restart_window(self) -> None:
        self.page_no = 1
        self.expected = None
        self.last_page = 1
        self.crowded = False
        self.seen = set()

    # -- answers ---------------------------------------------------------------------------

    def record(
        self,
        query: SearchQuery,
        total_count: int,
        identities: list[str],
        served_page_size: int | None = None,
    ) -> Step:
        """Take the answer to ``query``: its ``totalCount``, one identity per item (the
        customer's id, or for an item without one a digest of its JSON) and the page size the
        server says it used, if it says."""
        if query != self.next_query():
            raise ValueError(f"answer to {query}, but the walk asked for {self.next_query()}")
        total_count = max(0, total_count)
        if query.window is None:
            if self.census_before is None:
                self.census_before = total_count
            else:
                self.census_after = total_count
                self._check_census()
            return Step.CENSUS
        if served_page_size is not None and 0 < served_page_size < self.page_size:
            # The server pages by less than asked: offsets follow its size, so adopt it and
            # read this window again (the cap keeps pages within it at the new size).
            self.page_size = served_page_size
            self.usable_cap = (self.usable_cap // served_page_size) * served_page_size
            self._restart_window()
            return Step.REWALK
        window = query.window
        if self.page_no == 1:
            self.expected = total_count
            if total_count > self.usable_cap:
                if window.seconds > 1:
                    parts = max(2, math.ceil(2 * total_count / self.usable_cap))
                    self.pending.extend(reversed(window.split(parts)))
                    self.windows_split += 1
                    self.current = None
                    return Step.SPLIT
                self.crowded = True
                self.last_page = self.usable_cap // self.page_size
            else:
                self.last_page = max(1, math.ceil(total_count / self.page_size))
        elif total_count != self.expected:
            return self._rewalk(window)
        self.seen.update(identities)
        short = len(identities) < self.page_size
        if self.page_no < self.last_page and not short:
            self.page_no += 1
            return Step.NEXT_PAGE
        return self._finish_window(window)

    def _finish_window(self, window: Window) -> Step:
        assert self.expected is not None
        wanted = min(self.expected, self.usable_cap)
        if len(self.seen) != wanted:
            return self._rewalk(window)
        self.windows_done += 1
        self.found_total += self.expected
        if self.crowded:
            self.gaps.append(Gap(window, self.expected, len(self.seen), GapReason.CROWDED_SECOND))
        self.current = None
        self.attempts = 0
        return Step.WINDOW_DONE

    def _rewalk(self, window: Window) -> Step:
        self.rewalks += 1
        if window.seconds > 1:
            # Walked again as halves: a smaller window takes fewer pages, so fewer changes
            # land while it is paged, and one that fits a page is read in a single request.
            self.pending.extend(reversed(window.split(2)))
            self.current = None
            self.attempts = 0
            return Step.REWALK
        self.attempts += 1
        if self.attempts > self.max_rewalks:
            self.gaps.append(Gap(window, self.expected or 0, len(self.seen), GapReason.UNSTABLE))
            self.windows_done += 1
            self.current = None
            self.attempts = 0
            return Step.WINDOW_DONE
        self._restart_window()
        return Step.REWALK

    def _check_census(self) -> None:
        assert self.census_before is not None and self.census_after is not None
        listed = min(self.census_before, self.census_after)
        if self.found_total < listed:
            self.gaps.append(Gap(None, listed, self.found_total, GapReason.OUTSIDE_WINDOWS))

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        current = None
        if self.current is not None:
            current = {
                "window": _window_json(self.current),
                "page_no": self.page_no,
                "expected": self.expected,
                "last_page": self.last_page,
                "crowded": self.crowded,
                "seen": sorted(self.seen),
            }
        return {
            "full": self.full,
            "root": _window_json(self.root),
            "page_size": self.page_size,
            "usable_cap": self.usable_cap,
            "max_rewalks": self.max_rewalks,
            "pending": [_window_json(w) for w in self.pending],
            "current": current,
            "attempts": self.attempts,
            "census_before": self.census_before,
            "census_after": self.census_after,
            "windows_done": self.windows_done,
            "windows_split": self.windows_split,
            "rewalks": self.rewalks,
            "found_total": self.found_total,
            "gaps": [
                {
                    "window": None if g.window is None else _window_json(g.window),
                    "total_count": g.total_count,
                    "fetched": g.fetched,
                    "reason": g.reason.value,
                }
                for g in self.gaps
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiscoveryWalk:
        """A walk from ``to_json``; ValueError (or KeyError/TypeError) when it is not one."""
        walk = cls(
            full=bool(data["full"]),
            root=_window(data["root"]),
            page_size=int(data["page_size"]),
            usable_cap=int(data["usable_cap"]),
            max_rewalks=int(data["max_rewalks"]),
            pending=[_window(w) for w in data["pending"]],
            attempts=int(data["attempts"]),
            census_before=data["census_before"],
            census_after=data["census_after"],
            windows_done=int(data["windows_done"]),
            windows_split=int(data["windows_split"]),
            rewalks=int(data["rewalks"]),
            found_total=int(data["found_total"]),
            gaps=[
                Gap(
                    None if g["window"] is None else _window(g["window"]),
                    int(g["total_count"]),
                    int(g["fetched"]),
                    GapReason(g["reason"]),
                )
                for g in data["gaps"]
            ],
        )
        current = data["current"]
        if current is not None:
            walk.current = _window(current["window"])
            walk.page_no = int(current["page_no"])
            walk.expected = None if current["expected"] is None else int(current["expected"])
            walk.last_page = int(current["last_page"])
            walk.crowded = bool(current["crowded"])
            walk.seen = {str(identity) for identity in current["seen"]}
        return walk


def _window_json(window: Window) -> list[int]:
    return [window.start, window.end]


def _window(value: Any) -> Window:
    start, end = value
    return Window(int(start), int(end))
