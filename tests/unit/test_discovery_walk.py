"""The discovery walk, against an in-memory search: windows under the cap, splits, re-walks,
gaps, the census, and its state surviving a round trip through JSON at any step."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.discovery import (
    DiscoveryWalk,
    GapReason,
    SearchQuery,
    Step,
    Window,
    walk_page_size,
)


class FakeSearch:
    """Customers as (create second, id), newest first, paged by offset like the real one;
    ``churn`` runs before each request (a live list)."""

    def __init__(self, customers: list[tuple[int, int]], cap: int, churn=None) -> None:
        self.customers = customers
        self.cap = cap
        self.churn = churn
        self.requests = 0
        self.past_cap = 0

    def answer(self, query: SearchQuery) -> tuple[int, list[str]]:
        self.requests += 1
        if query.reach > self.cap:
            self.past_cap += 1
            raise AssertionError(f"asked past the cap: {query}")
        if self.churn is not None:
            self.churn(self)
        listed = sorted(self.customers, key=lambda c: (-c[0], -c[1]))
        if query.window is not None:
            listed = [c for c in listed if query.window.start <= c[0] <= query.window.end]
        first = (query.page_no - 1) * query.page_size
        page = listed[first : first + query.page_size]
        return len(listed), [f"id:{cid}" for _, cid in page]


def run_walk(walk: DiscoveryWalk, search: FakeSearch, *, restore_every: int = 0) -> set[str]:
    seen: set[str] = set()
    steps = 0
    while (query := walk.next_query()) is not None:
        total, ids = search.answer(query)
        walk.record(query, total, ids)
        seen.update(ids)
        steps += 1
        if restore_every and steps % restore_every == 0:
            walk = DiscoveryWalk.from_json(json.loads(json.dumps(walk.to_json())))
        assert steps < 100_000, "the walk does not end"
    run_walk.last = walk  # type: ignore[attr-defined]  # the walk as it ended, for asserts
    return seen


def plan(root: Window, *, full: bool = False, page: int = 10, cap: int = 50) -> DiscoveryWalk:
    return DiscoveryWalk.plan(root, full=full, page_size=page, max_results=cap, max_rewalks=3)


def test_a_window_under_the_cap_is_paged_to_its_end() -> None:
    customers = [(1000 + i, i + 1) for i in range(35)]
    search = FakeSearch(customers, cap=50)
    seen = run_walk(plan(Window(0, 5000)), search)
    assert seen == {f"id:{i + 1}" for i in range(35)}
    assert search.requests == 4  # 10 + 10 + 10 + 5


def test_nothing_in_the_window_costs_one_request() -> None:
    search = FakeSearch([(10, 1)], cap=50)
    walk = plan(Window(100, 200))
    assert run_walk(walk, search) == set()
    assert search.requests == 1


def test_over_the_cap_the_window_is_split_and_nothing_is_asked_past_it() -> None:
    customers = [(i * 3, i + 1) for i in range(400)]
    search = FakeSearch(customers, cap=50)
    walk = plan(Window(0, 1200))
    assert len(run_walk(walk, search)) == 400
    ended = run_walk.last  # type: ignore[attr-defined]
    assert ended.windows_split > 0 and not ended.gaps
    assert search.past_cap == 0


def test_more_than_the_cap_in_one_second_is_a_gap_with_what_the_cap_allows() -> None:
    crowded = [(500, i + 1) for i in range(80)]
    others = [(100 + i, 1000 + i) for i in range(30)]
    search = FakeSearch(crowded + others, cap=50)
    seen = run_walk(plan(Window(0, 1000)), search)
    ended = run_walk.last  # type: ignore[attr-defined]
    assert [g.reason for g in ended.gaps] == [GapReason.CROWDED_SECOND]
    gap = ended.gaps[0]
    assert gap.window == Window(500, 500) and (gap.total_count, gap.fetched) == (80, 50)
    assert {f"id:{1000 + i}" for i in range(30)} <= seen
    assert search.past_cap == 0


def test_the_usable_cap_is_whole_pages_under_the_cap() -> None:
    assert walk_page_size(100, 250) == (100, 200)
    assert walk_page_size(100, 10_000) == (100, 10_000)
    assert walk_page_size(100, 30) == (30, 30)


def test_a_total_that_changes_between_pages_walks_the_window_again() -> None:
    customers = [(1000 + i, i + 1) for i in range(30)]
    removed = False

    def drop_one(search: FakeSearch) -> None:
        nonlocal removed
        if search.requests == 2 and not removed:
            removed = True
            search.customers.remove((1000, 1))  # the oldest: the later pages shift

    search = FakeSearch(customers, cap=50, churn=drop_one)
    seen = run_walk(plan(Window(0, 5000)), search)
    assert {f"id:{i + 1}" for i in range(1, 30)} <= seen
    assert run_walk.last.rewalks >= 1  # type: ignore[attr-defined]


def test_a_server_that_pages_by_less_than_asked_is_followed() -> None:
    customers = [(1000 + i, i + 1) for i in range(25)]

    class SmallPages(FakeSearch):
        def answer(self, query: SearchQuery) -> tuple[int, list[str]]:
            served = SearchQuery(query.window, query.page_no, min(query.page_size, 7))
            return super().answer(served)

    search = SmallPages(customers, cap=50)
    walk = plan(Window(0, 5000))
    seen: set[str] = set()
    while (query := walk.next_query()) is not None:
        total, ids = search.answer(query)
        walk.record(query, total, ids, served_page_size=min(query.page_size, 7))
        seen.update(ids)
    assert len(seen) == 25 and walk.page_size == 7


def test_a_full_walk_counts_the_whole_list_before_and_after() -> None:
    customers = [(1000 + i, i + 1) for i in range(20)] + [(-50, 999)]  # outside every window
    search = FakeSearch(customers, cap=50)
    walk = plan(Window(0, 5000), full=True)
    first = walk.next_query()
    assert first == SearchQuery(None, 1, 1)
    run_walk(walk, search)
    ended = run_walk.last  # type: ignore[attr-defined]
    assert [g.reason for g in ended.gaps] == [GapReason.OUTSIDE_WINDOWS]
    assert (ended.gaps[0].total_count, ended.gaps[0].fetched) == (21, 20)


def test_an_answer_to_another_query_is_refused() -> None:
    walk = plan(Window(0, 10))
    with pytest.raises(ValueError, match="asked for"):
        walk.record(SearchQuery(Window(0, 10), 2, 10), 0, [])


def test_a_split_is_in_proportion_to_the_total() -> None:
    walk = plan(Window(0, 999), page=10, cap=50)
    query = walk.next_query()
    assert query is not None
    assert walk.record(query, 500, [f"id:{i}" for i in range(10)]) is Step.SPLIT
    assert len(walk.pending) == 20  # 2 × 500 / 50
    assert walk.pending[-1] == Window(0, 49)  # the oldest part is walked first


def test_the_state_reads_back_and_goes_on_with_the_next_page() -> None:
    walk = plan(Window(0, 999))
    query = walk.next_query()
    assert query is not None
    walk.record(query, 30, [f"id:{i}" for i in range(10)])
    restored = DiscoveryWalk.from_json(json.loads(json.dumps(walk.to_json())))
    assert restored.next_query() == SearchQuery(Window(0, 999), 2, 10)
    assert restored.seen == walk.seen and restored.expected == 30


@st.composite
def directories(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, int]:
    seconds = draw(st.lists(st.integers(0, 2000), min_size=0, max_size=300))
    page = draw(st.integers(1, 25))
    cap = draw(st.integers(page, 120))
    return [(s, i + 1) for i, s in enumerate(seconds)], page, cap


@settings(max_examples=150, deadline=None)
@given(directories(), st.integers(0, 7))
def test_every_customer_is_found_or_lies_in_a_recorded_gap(
    case: tuple[list[tuple[int, int]], int, int], restore_every: int
) -> None:
    customers, page, cap = case
    search = FakeSearch(customers, cap=cap)
    walk = plan(Window(0, 2000), full=True, page=page, cap=cap)
    seen = run_walk(walk, search, restore_every=restore_every)
    ended = run_walk.last  # type: ignore[attr-defined]
    assert search.past_cap == 0
    per_second = Counter(s for s, _ in customers)
    usable = (cap // min(page, cap)) * min(page, cap)
    crowded = {s for s, n in per_second.items() if n > usable}
    assert {g.window.start for g in ended.gaps if g.window} == crowded
    for second, customer_id in customers:
        if second not in crowded:
            assert f"id:{customer_id}" in seen


@settings(max_examples=100, deadline=None)
@given(directories(), st.integers(0, 2**32))
def test_survivors_of_a_live_list_are_found(
    case: tuple[list[tuple[int, int]], int, int], seed: int
) -> None:
    """Customers removed at random and created (newest of all) while the walk pages: every
    customer there before and after is found, unless it lies in a recorded gap."""
    customers, page, cap = case
    rng = random.Random(seed)
    next_id = len(customers) + 1
    before = set(customers)

    def churn(search: FakeSearch) -> None:
        nonlocal next_id
        if search.customers and rng.random() < 0.3:
            search.customers.pop(rng.randrange(len(search.customers)))
        if rng.random() < 0.3:
            search.customers.append((2000, next_id))
            next_id += 1

    search = FakeSearch(list(customers), cap=cap, churn=churn)
    walk = DiscoveryWalk.plan(
        Window(0, 2000), full=False, page_size=page, max_results=cap, max_rewalks=50
    )
    seen = run_walk(walk, search)
    ended = run_walk.last  # type: ignore[attr-defined]
    in_gaps = {g.window.start for g in ended.gaps if g.window}
    for second, customer_id in before & set(search.customers):
        if second not in in_gaps:
            assert f"id:{customer_id}" in seen
