"""Batcher: concurrent submissions share batches, each gets its own result, a failing item
costs only itself, and a cancelled writer hands its batch on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sync.mirror.batching import Batcher


class Recorder:
    """``write_batch`` for the tests. Each call suspends once (the transaction's round trips)
    and, when ``held``, until ``release()``: callers that submit meanwhile queue behind it."""

    def __init__(self, poison: frozenset[int] = frozenset(), *, held: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.poison = poison
        self._open = asyncio.Event()
        if not held:
            self._open.set()

    def release(self) -> None:
        self._open.set()

    async def write(self, items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        await self._open.wait()
        if self.poison & set(items):
            raise ValueError(f"bad item in {sorted(items)}")
        self.batches.append(list(items))
        return [item * 10 for item in items]


async def submitted(group: Batcher[int, int], item: int) -> asyncio.Task[int]:
    """A task submitting ``item``, returned once that task has queued it (and, with no writer
    at work, started writing it)."""
    running = asyncio.Event()

    async def submit() -> int:
        # submit() queues the item before its first await, and set() wakes our caller only
        # after this task pauses: by then the item is queued.
        running.set()
        return await group.submit(item)

    task = asyncio.create_task(submit())
    await running.wait()
    return task


def _up_to(limit: int):  # type: ignore[no-untyped-def]
    return lambda batch, item: len(batch) < limit


async def test_concurrent_items_share_batches_and_get_their_own_results() -> None:
    recorder = Recorder()
    group = Batcher(recorder.write, _up_to(100))
    results = await asyncio.gather(*(group.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(20))
    assert len(recorder.batches) < 20  # shared, not one transaction each
    assert recorder.batches[0] == [0]  # the first caller found nobody writing


async def test_fits_bounds_a_batch_and_order_is_kept() -> None:
    recorder = Recorder()
    group = Batcher(recorder.write, _up_to(3))
    await asyncio.gather(*(group.submit(i) for i in range(10)))
    assert all(len(batch) <= 3 for batch in recorder.batches)
    assert [i for batch in recorder.batches for i in batch] == list(range(10))


async def test_a_failing_item_fails_alone() -> None:
    recorder = Recorder(poison=frozenset({5}))
    group = Batcher(recorder.write, _up_to(100))
    outcomes = await asyncio.gather(*(group.submit(i) for i in range(10)), return_exceptions=True)
    assert isinstance(outcomes[5], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 5] == [i * 10 for i in range(10) if i != 5]


async def test_a_cancelled_writer_hands_over_and_its_own_item_is_dropped() -> None:
    recorder = Recorder(held=True)
    group = Batcher(recorder.write, _up_to(100))
    writer = await submitted(group, 0)  # 0 is being written
    followers = [await submitted(group, i) for i in (1, 2, 3)]
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    recorder.release()
    assert await asyncio.gather(*followers) == [10, 20, 30]
    assert recorder.batches == [[1, 2, 3]]


async def test_a_cancelled_waiter_is_not_written() -> None:
    recorder = Recorder(held=True)
    group = Batcher(recorder.write, _up_to(1))
    first = await submitted(group, 0)
    second = await submitted(group, 1)
    third = await submitted(group, 2)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    recorder.release()
    assert await first == 0
    assert await third == 20
    assert recorder.batches == [[0], [2]]
