"""The paging state machine: cursors, verdicts, and the crash-safety invariant.

The invariant (module docstring): high_water_id moves only when a pass completes, to the pass's
top; a crash at any instant leaves at most the in-flight page to fetch again and never a gap below
the mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.pager import (
    CustomerCursor,
    PageStep,
    PageVerdict,
    PassMode,
    VanishedCheck,
    begin_pass,
    next_last_id,
    step,
)

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def desc(top: int, bottom: int = 1) -> list[int]:
    return list(range(top, bottom - 1, -1))


def serve(ids_desc: list[int], last_id: int | None, size: int) -> list[int]:
    """A well-behaved server: newest first, strictly below lastId, at most ``size`` records."""
    return [i for i in ids_desc if last_id is None or i < last_id][:size]


def take(
    cursor: CustomerCursor, page: list[int], size: int, *, stop_on_short_page: bool = True
) -> PageStep:
    """One page of usable ids, as many items as ids, no page size echoed by the server."""
    return step(
        cursor,
        page,
        len(page),
        requested_size=size,
        reported_size=None,
        stop_on_short_page=stop_on_short_page,
    )


def in_pass(
    *,
    high_water: int | None = None,
    cursor: int | None = None,
    top: int | None = None,
    floor: int | None = None,
    full: bool = False,
    started: datetime = T0,
) -> CustomerCursor:
    return CustomerCursor(
        high_water_id=high_water,
        pass_cursor_id=cursor,
        pass_top_id=top,
        pass_floor_id=floor,
        pass_started_at=started,
        pass_full=full,
    )


# --- begin_pass ---------------------------------------------------------------------------------


def test_new_cursor_is_not_in_a_pass() -> None:
    assert not CustomerCursor().in_pass
    assert CustomerCursor(high_water_id=5).in_pass is False


@pytest.mark.parametrize("mode", list(PassMode))
def test_first_page_has_no_last_id(mode: PassMode) -> None:
    cursor = begin_pass(CustomerCursor(), mode, 1000, T0)
    assert cursor.in_pass
    assert next_last_id(cursor) is None
    assert cursor.pass_started_at == T0
    assert cursor.pass_top_id is None
    assert cursor.pass_floor_id is None  # nothing mirrored yet: walk to the end
    assert cursor.high_water_id is None
    assert cursor.pass_full is (mode is PassMode.FULL)


def test_incremental_start_sets_floor_high_water_minus_lookback() -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=10_000), PassMode.INCREMENTAL, 300, T0)
    assert cursor.pass_floor_id == 9_700
    assert cursor.high_water_id == 10_000
    assert next_last_id(cursor) is None
    assert not cursor.pass_full


@pytest.mark.parametrize("mode", [PassMode.BACKFILL, PassMode.FULL])
def test_backfill_and_full_start_walk_to_the_end(mode: PassMode) -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=10_000), mode, 300, T0)
    assert cursor.pass_floor_id is None
    assert cursor.high_water_id == 10_000
    assert next_last_id(cursor) is None


def test_full_start_sets_pass_full() -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=7), PassMode.FULL, 0, T0)
    assert cursor.pass_full
    assert cursor.pass_started_at == T0


def test_begin_pass_resumes_an_interrupted_incremental_pass() -> None:
    interrupted = in_pass(high_water=500, cursor=620, top=700, floor=450, started=T0)
    resumed = begin_pass(interrupted, PassMode.INCREMENTAL, 50, T1)
    assert resumed.pass_cursor_id == 620
    assert resumed.pass_top_id == 700
    assert resumed.pass_floor_id == 450
    assert resumed.pass_started_at == T0  # not restarted
    assert resumed.high_water_id == 500
    assert not resumed.pass_full
    assert next_last_id(resumed) == 620


@pytest.mark.parametrize("mode", [PassMode.BACKFILL, PassMode.FULL])
def test_backfill_or_full_resume_walks_to_the_end(mode: PassMode) -> None:
    interrupted = in_pass(high_water=500, cursor=620, top=700, floor=450, started=T0)
    resumed = begin_pass(interrupted, mode, 50, T1)
    assert resumed.pass_floor_id is None
    assert resumed.pass_cursor_id == 620
    assert resumed.pass_top_id == 700
    assert resumed.pass_started_at == T0
    assert resumed.pass_full is (mode is PassMode.FULL)


def test_resumed_full_pass_stays_full_under_incremental() -> None:
    interrupted = in_pass(high_water=500, cursor=620, top=700, floor=None, full=True)
    resumed = begin_pass(interrupted, PassMode.INCREMENTAL, 50, T1)
    assert resumed.pass_full
    assert resumed.pass_floor_id is None


def test_interrupted_first_page_resumes_from_the_top() -> None:
    started = begin_pass(CustomerCursor(high_water_id=9), PassMode.INCREMENTAL, 2, T0)
    resumed = begin_pass(started, PassMode.INCREMENTAL, 2, T1)
    assert next_last_id(resumed) is None
    assert resumed.pass_started_at == T0
    assert resumed.pass_floor_id == 7


# --- step ---------------------------------------------------------------------------------------


def test_full_page_continues_from_the_smallest_id() -> None:
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    result = take(cursor, [100, 99, 98, 97], 4)
    assert result.verdict is PageVerdict.CONTINUE
    assert result.cursor.pass_cursor_id == 97
    assert result.cursor.pass_top_id == 100
    assert result.cursor.high_water_id is None  # moves only on completion
    assert result.cursor.pass_started_at == T0
    assert result.vanished is None
    assert next_last_id(result.cursor) == 97


def test_cursor_is_the_minimum_even_when_the_page_is_not_sorted() -> None:
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    result = take(cursor, [97, 100, 95, 99], 4)
    assert result.cursor.pass_cursor_id == 95
    assert result.cursor.pass_top_id == 100


def test_second_page_keeps_the_pass_top() -> None:
    cursor = in_pass(cursor=97, top=100)
    result = take(cursor, [96, 95, 94, 93], 4)
    assert result.verdict is PageVerdict.CONTINUE
    assert result.cursor.pass_cursor_id == 93
    assert result.cursor.pass_top_id == 100


def test_short_page_completes_and_moves_high_water_to_the_top() -> None:
    cursor = in_pass(high_water=40, cursor=97, top=100)
    result = take(cursor, [96, 95], 4)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor == CustomerCursor(high_water_id=100)
    assert not result.cursor.in_pass
    assert result.vanished is None
    assert result.detail


def test_short_first_page_completes_with_its_own_top() -> None:
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    result = take(cursor, [12, 7, 3], 100)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor.high_water_id == 12


@pytest.mark.parametrize("high_water", [None, 50])
def test_empty_first_page_completes_without_changing_high_water(high_water: int | None) -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=high_water), PassMode.INCREMENTAL, 5, T0)
    result = take(cursor, [], 100)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor == CustomerCursor(high_water_id=high_water)


def test_empty_later_page_completes_with_the_pass_top() -> None:
    result = take(in_pass(high_water=None, cursor=91, top=100), [], 10)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor.high_water_id == 100


def test_incremental_pass_stops_at_the_lookback_floor() -> None:
    # high water H=1000, lookback L=20: the floor is 980
    cursor = begin_pass(CustomerCursor(high_water_id=1000), PassMode.INCREMENTAL, 20, T0)
    first = take(cursor, desc(1030, 1021), 10)
    assert first.verdict is PageVerdict.CONTINUE
    second = take(first.cursor, desc(1020, 1011), 10)
    assert second.verdict is PageVerdict.CONTINUE
    third = take(second.cursor, desc(1010, 1001), 10)
    assert third.verdict is PageVerdict.CONTINUE  # 1001 > 980
    fourth = take(third.cursor, desc(1000, 991), 10)
    assert fourth.verdict is PageVerdict.CONTINUE  # 991 > 980
    fifth = take(fourth.cursor, desc(990, 981), 10)
    assert fifth.verdict is PageVerdict.CONTINUE  # 981 > 980
    last = take(fifth.cursor, desc(980, 971), 10)
    assert last.verdict is PageVerdict.COMPLETE  # 971 <= 980
    assert last.cursor == CustomerCursor(high_water_id=1030)


def test_floor_is_inclusive() -> None:
    cursor = in_pass(high_water=100, top=110, cursor=None, floor=90)
    assert take(cursor, [99, 95, 91], 3).verdict is PageVerdict.CONTINUE
    assert take(cursor, [99, 95, 90], 3).verdict is PageVerdict.COMPLETE


def test_unchanged_customer_costs_one_page() -> None:
    ids = desc(5000, 4001)
    cursor = begin_pass(CustomerCursor(high_water_id=5000), PassMode.INCREMENTAL, 30, T0)
    page = serve(ids, next_last_id(cursor), 100)
    result = take(cursor, page, 100)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor == CustomerCursor(high_water_id=5000)


def test_reported_page_size_smaller_than_requested() -> None:
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    full = step(cursor, [100, 99], 2, requested_size=100, reported_size=2)
    assert full.verdict is PageVerdict.CONTINUE
    assert full.cursor.pass_cursor_id == 99
    short = step(full.cursor, [98], 1, requested_size=100, reported_size=2)
    assert short.verdict is PageVerdict.COMPLETE
    assert short.cursor.high_water_id == 100


def test_reported_page_size_larger_than_requested_is_ignored() -> None:
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    full = step(cursor, desc(10, 1), 10, requested_size=10, reported_size=500)
    assert full.verdict is PageVerdict.CONTINUE
    short = step(cursor, desc(10, 2), 9, requested_size=10, reported_size=500)
    assert short.verdict is PageVerdict.COMPLETE


def test_rejected_items_count_towards_the_page_size() -> None:
    # 4 items on the page, 2 of them without a usable id: still a full page
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    result = step(cursor, [100, 98], 4, requested_size=4, reported_size=None)
    assert result.verdict is PageVerdict.CONTINUE
    assert result.cursor.pass_cursor_id == 98


def test_without_stop_on_short_page_only_an_empty_page_ends() -> None:
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, 0, T0)
    short = take(cursor, [100, 99], 10, stop_on_short_page=False)
    assert short.verdict is PageVerdict.CONTINUE
    assert short.cursor.pass_cursor_id == 99
    shorter = take(short.cursor, [50], 10, stop_on_short_page=False)
    assert shorter.verdict is PageVerdict.CONTINUE
    empty = take(shorter.cursor, [], 10, stop_on_short_page=False)
    assert empty.verdict is PageVerdict.COMPLETE
    assert empty.cursor.high_water_id == 100


def test_without_stop_on_short_page_the_floor_still_ends_the_pass() -> None:
    cursor = in_pass(high_water=100, floor=90)
    result = take(cursor, [101, 89], 10, stop_on_short_page=False)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor.high_water_id == 101


@pytest.mark.parametrize("page", [[95, 93, 92], [91, 91, 91], [120, 110, 91]])
def test_page_not_below_last_id_is_stuck_and_keeps_the_resume_point(page: list[int]) -> None:
    cursor = in_pass(high_water=50, cursor=91, top=100, floor=40)
    result = take(cursor, page, 3)
    assert result.verdict is PageVerdict.STUCK
    assert "91" in result.detail
    assert "lastId" in result.detail
    assert result.cursor.pass_cursor_id == 91
    assert result.cursor.pass_top_id == 100  # ids above lastId do not lift the pass top
    assert result.cursor.in_pass
    assert result.cursor.high_water_id == 50
    assert result.cursor.pass_floor_id == 40
    assert result.cursor.pass_started_at == T0
    assert next_last_id(result.cursor) == 91
    assert result.vanished is None


@pytest.mark.parametrize("asked", [None, 91])
def test_full_page_without_usable_ids_is_stuck(asked: int | None) -> None:
    cursor = in_pass(high_water=50, cursor=asked, top=None if asked is None else 100)
    result = step(cursor, [], 10, requested_size=10, reported_size=None)
    assert result.verdict is PageVerdict.STUCK
    assert "usable" in result.detail
    assert result.cursor.pass_cursor_id == asked
    assert result.cursor.high_water_id == 50
    assert result.cursor.in_pass


def test_mixed_page_continues_from_the_smallest_id_below_last_id() -> None:
    cursor = in_pass(cursor=91, top=100)
    result = take(cursor, [95, 90, 85], 3)
    assert result.verdict is PageVerdict.CONTINUE
    assert result.cursor.pass_cursor_id == 85


# --- full reconcile -----------------------------------------------------------------------------


def test_full_pass_completion_returns_a_vanished_check() -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=90), PassMode.FULL, 0, T0)
    first = take(cursor, [100, 99, 98], 3)
    assert first.verdict is PageVerdict.CONTINUE
    assert first.vanished is None
    last = take(first.cursor, [97], 3)
    assert last.verdict is PageVerdict.COMPLETE
    assert last.vanished == VanishedCheck(seen_since=T0)
    assert last.cursor == CustomerCursor(high_water_id=100)


def test_resumed_full_pass_uses_the_original_start() -> None:
    interrupted = in_pass(high_water=10, cursor=50, top=100, full=True, started=T0)
    resumed = begin_pass(interrupted, PassMode.FULL, 0, T1)
    done = take(resumed, [49, 48], 10)
    assert done.vanished == VanishedCheck(seen_since=T0)


@pytest.mark.parametrize("mode", [PassMode.INCREMENTAL, PassMode.BACKFILL])
def test_other_passes_mark_nothing_vanished(mode: PassMode) -> None:
    cursor = begin_pass(CustomerCursor(), mode, 0, T0)
    assert take(cursor, [5, 4], 10).vanished is None


def test_full_pass_stuck_marks_nothing() -> None:
    cursor = in_pass(cursor=10, top=20, full=True)
    assert take(cursor, [15, 14], 2).vanished is None


# --- high water ---------------------------------------------------------------------------------


def test_high_water_does_not_decrease_when_the_list_shrank() -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=500), PassMode.BACKFILL, 0, T0)
    result = take(cursor, [300, 200], 10)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.cursor.high_water_id == 500


@settings(max_examples=400, deadline=None, database=None)
@given(
    st.one_of(st.none(), st.integers(1, 1000)),
    st.one_of(st.none(), st.integers(1, 1000)),
    st.one_of(st.none(), st.integers(1, 1000)),
    st.one_of(st.none(), st.integers(-100, 1000)),
    st.booleans(),
    st.lists(st.integers(1, 1000), max_size=12),
    st.integers(0, 5),
    st.integers(1, 12),
    st.one_of(st.none(), st.integers(1, 12)),
    st.booleans(),
)
def test_property_step_never_lowers_high_water_or_loses_the_resume_point(
    high_water: int | None,
    asked: int | None,
    top: int | None,
    floor: int | None,
    full: bool,
    page: list[int],
    rejected: int,
    size: int,
    reported: int | None,
    stop_on_short: bool,
) -> None:
    cursor = in_pass(high_water=high_water, cursor=asked, top=top, floor=floor, full=full)
    result = step(
        cursor,
        page,
        len(page) + rejected,
        requested_size=size,
        reported_size=reported,
        stop_on_short_page=stop_on_short,
    )
    new = result.cursor
    if high_water is not None:
        assert new.high_water_id is not None
        assert new.high_water_id >= high_water
    if result.verdict is PageVerdict.COMPLETE:
        assert not new.in_pass
        assert new.pass_cursor_id is None
        if result.vanished is not None:
            assert full
            assert result.vanished.seen_since == T0
    else:
        assert new.in_pass
        assert new.high_water_id == high_water  # moves only on completion
        assert new.pass_started_at == T0
        assert new.pass_floor_id == floor
        assert new.pass_full == full
        assert result.vanished is None
    if asked is not None and result.verdict is not PageVerdict.COMPLETE:
        assert new.pass_top_id == top  # only the first page sets the top
    if result.verdict is PageVerdict.COMPLETE and asked is not None:
        expected = high_water if top is None else max(top, high_water or top)
        assert new.high_water_id == expected
    if result.verdict is PageVerdict.CONTINUE:
        assert new.pass_cursor_id in page
        assert asked is None or new.pass_cursor_id < asked
        assert floor is None or new.pass_cursor_id > floor
    if result.verdict is PageVerdict.STUCK:
        assert new.pass_cursor_id == asked
        assert result.detail


# --- crash simulation ---------------------------------------------------------------------------


@dataclass
class Sim:
    """Drives passes against a server list, crashing where ``crash`` says so.

    A crash discards the step of the page just fetched (its transaction never committed); the
    next attempt starts again from the last persisted cursor.
    """

    ids_desc: list[int]
    size: int
    crash: Callable[[], bool]
    persisted: CustomerCursor = field(default_factory=CustomerCursor)
    fetches: list[int | None] = field(default_factory=list)
    fetched_ids: set[int] = field(default_factory=set)
    crashes: int = 0
    started: datetime | None = None
    clock: Iterator[datetime] = field(
        default_factory=lambda: (T0 + timedelta(minutes=n) for n in range(10**9))
    )

    def run(self, mode: PassMode, lookback: int = 0, max_fetches: int = 10_000) -> PageStep:
        while True:
            now = next(self.clock)
            if not self.persisted.in_pass:
                self.started = now  # a new pass (a resumed one keeps its start)
            cursor = begin_pass(self.persisted, mode, lookback, now)
            while True:
                assert len(self.fetches) < max_fetches, "the pass does not end"
                last_id = next_last_id(cursor)
                page = serve(self.ids_desc, last_id, self.size)
                self.fetches.append(last_id)
                self.fetched_ids.update(page)
                result = take(cursor, page, self.size)
                if self.crash():
                    self.crashes += 1
                    break  # the page's transaction is lost
                assert result.verdict is not PageVerdict.STUCK, result.detail
                self.persisted = result.cursor
                if result.verdict is PageVerdict.COMPLETE:
                    return result
                cursor = result.cursor


def never() -> bool:
    return False


_id_lists = st.lists(st.integers(1, 10**6), unique=True, max_size=60).map(
    lambda ids: sorted(ids, reverse=True)
)


@settings(max_examples=200, deadline=None, database=None)
@given(_id_lists, st.integers(1, 7), st.data(), st.sampled_from(list(PassMode)))
def test_property_crashes_cost_at_most_one_page_each(
    ids: list[int], size: int, data: st.DataObject, mode: PassMode
) -> None:
    baseline = Sim(ids, size, never)
    baseline.run(mode)

    budget = [data.draw(st.integers(0, 8), label="crash budget")]

    def crash() -> bool:
        if budget[0] and data.draw(st.booleans(), label="crash here"):
            budget[0] -= 1
            return True
        return False

    sim = Sim(ids, size, crash)
    done = sim.run(mode)

    assert done.verdict is PageVerdict.COMPLETE
    assert sim.fetched_ids == set(ids)  # every id fetched at least once
    assert sim.persisted.high_water_id == (max(ids) if ids else None)
    assert not sim.persisted.in_pass
    # each crash re-fetches exactly the page that was in flight, nothing more
    assert len(sim.fetches) <= len(baseline.fetches) + sim.crashes
    assert len(sim.fetches) - len(set(sim.fetches)) <= sim.crashes
    assert set(sim.fetches) == set(baseline.fetches)
    if mode is PassMode.FULL:
        assert done.vanished is not None
        # the start of the pass that completed, even when it was resumed after crashes
        assert done.vanished.seen_since == sim.started


@settings(max_examples=150, deadline=None, database=None)
@given(
    _id_lists.filter(bool),
    st.lists(st.integers(1, 200), unique=True, max_size=20),
    st.lists(st.integers(1, 30), unique=True, max_size=10),
    st.integers(1, 7),
    st.integers(0, 40),
    st.data(),
)
def test_property_incremental_pass_finds_new_and_late_records(
    old: list[int],
    newer_offsets: list[int],
    late_offsets: list[int],
    size: int,
    lookback: int,
    data: st.DataObject,
) -> None:
    mirror = Sim(old, size, never)
    mirror.run(PassMode.BACKFILL)
    high_water = max(old)
    assert mirror.persisted.high_water_id == high_water

    # Records newer than the mark, and late arrivals within the lookback below it.
    newer = {high_water + d for d in newer_offsets}
    late = {high_water - d for d in late_offsets if d < lookback and high_water - d > 0}
    late -= set(old)
    everything = sorted(set(old) | newer | late, reverse=True)

    budget = [data.draw(st.integers(0, 5), label="crash budget")]

    def crash() -> bool:
        if budget[0] and data.draw(st.booleans(), label="crash here"):
            budget[0] -= 1
            return True
        return False

    sim = Sim(everything, size, crash, persisted=mirror.persisted)
    sim.run(PassMode.INCREMENTAL, lookback)
    assert newer <= sim.fetched_ids
    assert late <= sim.fetched_ids
    assert sim.persisted.high_water_id == max(everything)


def test_simulated_unchanged_customer_costs_one_page_per_run() -> None:
    sim = Sim(desc(10_000, 1), 100, never)
    sim.run(PassMode.BACKFILL)
    before = len(sim.fetches)
    for _ in range(3):
        sim.run(PassMode.INCREMENTAL, lookback=50)
    assert len(sim.fetches) == before + 3
    assert sim.persisted == CustomerCursor(high_water_id=10_000)


# --- misbehaving servers and deletions (regressions) ----------------------------------------------


def test_full_pass_covers_a_deleted_newest_record() -> None:
    # ids 1..100 were mirrored; upstream now has 1..99 (100 was deleted). The check has no id
    # bound: everything not seen since the pass began is gone, including 100.
    cursor = begin_pass(CustomerCursor(high_water_id=100), PassMode.FULL, 0, T0)
    result = take(cursor, desc(99, 95), 10)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.vanished == VanishedCheck(seen_since=T0)
    assert result.cursor.high_water_id == 100


def test_full_pass_over_an_emptied_list_marks_everything_vanished() -> None:
    cursor = begin_pass(CustomerCursor(high_water_id=100), PassMode.FULL, 0, T0)
    result = take(cursor, [], 10)
    assert result.verdict is PageVerdict.COMPLETE
    assert result.vanished == VanishedCheck(seen_since=T0)
    assert result.cursor == CustomerCursor(high_water_id=100)


def test_later_page_does_not_lift_the_pass_top() -> None:
    cursor = in_pass(cursor=91, top=100)
    mixed = take(cursor, [*desc(120, 112), 90], 10)
    assert mixed.verdict is PageVerdict.CONTINUE
    assert mixed.cursor.pass_top_id == 100
    done = take(mixed.cursor, [89], 10)
    assert done.cursor.high_water_id == 100


@pytest.mark.parametrize("answer", ["stuck", "mixed"])
def test_ids_above_last_id_on_a_later_page_leave_no_gap(answer: str) -> None:
    size, lookback = 10, 5
    ids = desc(100)
    cursor = begin_pass(CustomerCursor(), PassMode.BACKFILL, lookback, T0)
    first = take(cursor, serve(ids, None, size), size)
    assert first.cursor.pass_cursor_id == 91
    # 20 newer records appear; the next answer ignores lastId=91 and starts at the newest
    ids = desc(120)
    fetched = set(range(100, 90, -1))
    page = desc(120, 111) if answer == "stuck" else [*desc(120, 112), 90]
    fetched.update(page)
    second = take(first.cursor, page, size)
    persisted = second.cursor
    assert persisted.pass_cursor_id in (91, 90)
    # later runs: the server behaves again; resume, then one more incremental pass
    for _ in range(2):
        cursor = begin_pass(persisted, PassMode.INCREMENTAL, lookback, T1)
        while True:
            page = serve(ids, next_last_id(cursor), size)
            fetched.update(page)
            result = take(cursor, page, size)
            assert result.verdict is not PageVerdict.STUCK
            cursor = persisted = result.cursor
            if result.verdict is PageVerdict.COMPLETE:
                break
    assert persisted.high_water_id == 120
    assert set(ids) <= fetched, sorted(set(ids) - fetched)
