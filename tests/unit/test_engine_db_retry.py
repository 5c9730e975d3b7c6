"""The engine's retry in place of a page write: a shutdown still comes first."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
import structlog

from sync.engine.db_retry import retry_db, whole


async def test_a_shutdown_during_a_write_that_then_fails_is_delivered_not_retried() -> None:
    """The write is seen through to its end despite the cancellation; it fails as a lost
    connection would, and the worker must stop there rather than wait and write again."""
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def write() -> int:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        raise ConnectionResetError(104, "Connection reset by peer")

    task = asyncio.create_task(retry_db(partial(whole, write), structlog.get_logger()))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the write to end
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
