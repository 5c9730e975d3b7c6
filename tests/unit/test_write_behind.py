"""One page write in flight while the next page is fetched: settled in order, errors raised at
the settle, and a shutdown still waits for the write."""

from __future__ import annotations

import asyncio

import pytest

from sync.domain.tally import PageCounts
from sync.engine.write_behind import WriteBehind


async def _written(counts: PageCounts, release: asyncio.Event) -> PageCounts:
    await release.wait()
    return counts


async def test_the_write_runs_while_the_caller_works_and_settles_with_its_counts() -> None:
    release, seen = asyncio.Event(), []
    behind = WriteBehind()
    assert await behind.settle() is None  # nothing in flight
    behind.start(_written(PageCounts(inserted=3), release), seen.append)
    await asyncio.sleep(0)
    assert seen == []  # the caller goes on (fetches the next page) meanwhile
    release.set()
    counts = await behind.settle()
    assert counts == PageCounts(inserted=3) and seen == [counts]
    assert await behind.settle() is None  # settled once only


async def test_a_second_write_is_refused_until_the_first_is_settled() -> None:
    release = asyncio.Event()
    behind = WriteBehind()
    behind.start(_written(PageCounts(), release), lambda _counts: None)
    second = _written(PageCounts(), release)
    with pytest.raises(RuntimeError, match="already in flight"):
        behind.start(second, lambda _counts: None)
    second.close()
    release.set()
    await behind.settle()


async def test_a_failed_write_is_raised_at_the_settle_and_hands_on_nothing() -> None:
    seen: list[PageCounts] = []

    async def refused() -> PageCounts:
        raise ValueError("refused by the database")

    behind = WriteBehind()
    behind.start(refused(), seen.append)
    with pytest.raises(ValueError, match="refused by the database"):
        await behind.settle()
    assert seen == [] and await behind.settle() is None


async def test_a_cancelled_settle_still_sees_the_write_through() -> None:
    release, seen = asyncio.Event(), []
    behind = WriteBehind()
    behind.start(_written(PageCounts(updated=1), release), seen.append)
    settling = asyncio.create_task(behind.settle())
    await asyncio.sleep(0)
    settling.cancel()
    await asyncio.sleep(0.01)
    assert not settling.done()  # the transaction is not abandoned half-way
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await settling
