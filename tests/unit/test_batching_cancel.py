"""A caller cancelled while its item is in a batch another caller writes leaves no stray
"exception was never retrieved" behind when that batch fails."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

from sync.mirror.batching import Batcher


async def test_a_failed_batch_of_a_cancelled_caller_logs_nothing() -> None:
    first_may_end, second_batch_writing = asyncio.Event(), asyncio.Event()
    second_may_fail = asyncio.Event()
    batches: list[list[int]] = []

    async def write_batch(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if items == [1]:
            await first_may_end.wait()
            return [1]
        if items == [2, 3]:
            second_batch_writing.set()
            await second_may_fail.wait()
        raise RuntimeError("the database went away")

    batcher: Batcher[int, int] = Batcher(write_batch, lambda batch, item: True)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(batcher.submit(2))
    third = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    first_may_end.set()
    await second_batch_writing.wait()  # 2 writes the batch [2, 3]; 3 waits on it
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        third.cancel()
        await asyncio.sleep(0)
        second_may_fail.set()
        results = await asyncio.gather(first, second, third, return_exceptions=True)
        assert results[0] == 1
        assert isinstance(results[1], RuntimeError)
        assert isinstance(results[2], asyncio.CancelledError)
        del first, second, third, results
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert batches[:2] == [[1], [2, 3]]
    stray = [str(c.get("message")) for c in reported if "never retrieved" in str(c.get("message"))]
    assert stray == []
