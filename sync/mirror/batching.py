"""Batching concurrent calls: many callers, one database round trip for all that is waiting.

The store uses it for group commit (pages of many workers in one transaction) and for reading
many customers' cursors with one query.

Each caller submits one item and waits for its own result. Whoever finds no writer at work
becomes the writer and hands everything queued so far (in arrival order, as far as ``fits``
allows) to ``write_batch`` in one call, then the next lot, until its own item is written. A page
transaction costs several round trips to the database whatever its size, so with many workers
this turns N of them into one (see BENCHMARKS.md).

A failure must cost only the item that caused it: when a batch of several fails, each of its
items is written again on its own and gets its own result or error. No background task: a
writer that is cancelled puts its unfinished batch back, and a waiting caller takes over.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Entry(Generic[T, R]):
    __slots__ = ("item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: asyncio.Future[R] = asyncio.get_running_loop().create_future()


class Batcher(Generic[T, R]):
    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        fits: Callable[[Sequence[T], T], bool],
    ) -> None:
        """``write_batch(items)`` writes them together and returns one result per item, in
        order; ``fits(batch, item)`` says whether ``item`` may join ``batch`` (the first item of
        a batch always does)."""
        self._write_batch = write_batch
        self._fits = fits
        self._queue: deque[_Entry[T, R]] = deque()
        self._writing = False
        self._writer_left: asyncio.Event | None = None

    async def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        self._queue.append(entry)
        try:
            while not entry.result.done():
                if not self._writing:
                    await self._write_until(entry)
                else:
                    await self._wait_for(entry)
        except asyncio.CancelledError:
            if entry in self._queue:  # not written and nobody will: forget it
                self._queue.remove(entry)
            else:
                # In a batch another caller is writing: its outcome has no reader any more, and
                # an error left unread would be logged at exit as a stray traceback.
                entry.result.add_done_callback(_read_outcome)
            raise
        return entry.result.result()

    async def _wait_for(self, entry: _Entry[T, R]) -> None:
        """Until our result is set or the writer leaves (then someone must take over)."""
        if self._writer_left is None or self._writer_left.is_set():
            self._writer_left = asyncio.Event()
        left = asyncio.ensure_future(self._writer_left.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {entry.result, left}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()

    async def _write_until(self, own: _Entry[T, R]) -> None:
        """Write batches until our own item is written, then let a waiting caller take over
        (a writer that stayed while others keep queueing would never get back to its work)."""
        self._writing = True
        try:
            while not own.result.done():
                batch = self._take_batch()
                try:
                    await self._write(batch)
                except BaseException:
                    # Cancelled mid-batch: what is unanswered goes back, first in line.
                    self._queue.extendleft(reversed([e for e in batch if not e.result.done()]))
                    raise
        finally:
            self._writing = False
            if self._writer_left is not None:
                self._writer_left.set()

    def _take_batch(self) -> list[_Entry[T, R]]:
        batch = [self._queue.popleft()]
        items = [batch[0].item]
        while self._queue and self._fits(items, self._queue[0].item):
            entry = self._queue.popleft()
            batch.append(entry)
            items.append(entry.item)
        return batch

    async def _write(self, batch: list[_Entry[T, R]]) -> None:
        try:
            results = await self._write_batch([e.item for e in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].result.set_exception(exc)
                return
            for entry in batch:  # find the culprit: each on its own
                await self._write([entry])
            return
        for entry, result in zip(batch, results, strict=True):
            entry.result.set_result(result)


def _read_outcome(result: asyncio.Future[Any]) -> None:
    if not result.cancelled():
        result.exception()
