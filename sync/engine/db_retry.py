"""Database calls that must survive a dropped connection or a shutdown.

A dropped connection (a server restart, its backends terminated) fails every worker's write at
once; a page write or cursor read that lost its connection is tried again in place first. And
once a page is fetched its transaction commits or rolls back whole, even if a shutdown cancels
the worker meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_chain,
    wait_fixed,
)

from sync.mirror.database import describe_db_error, is_transient_db_error

# Waits of 0.25, 0.5, 1 and 2 s, 3.75 s in all: a dropped connection is back at once and a
# quick restart within that, while a lasting outage still stops the run within seconds.
DB_RETRY_WAITS_S = (0.25, 0.5, 1.0, 2.0)

T = TypeVar("T")


async def retry_db(
    call: Callable[[], Awaitable[T]], bound: structlog.typing.FilteringBoundLogger
) -> T:
    """``call()`` again after a short wait while it fails with a database error a retry may
    cure (see is_transient_db_error); any other error, or the last one, is raised."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(len(DB_RETRY_WAITS_S) + 1),
        wait=wait_chain(*(wait_fixed(s) for s in DB_RETRY_WAITS_S)),
        retry=retry_if_exception(is_transient_db_error),
        before_sleep=_db_retry_logger(bound),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")


def _db_retry_logger(
    bound: structlog.typing.FilteringBoundLogger,
) -> Callable[[RetryCallState], None]:
    def hook(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        bound.warning(
            "database_retry",
            attempt=state.attempt_number,
            error=describe_db_error(error) if error is not None else None,
            wait_s=round(state.next_action.sleep, 3) if state.next_action else 0.0,
        )

    return hook


async def whole(start: Callable[[], Awaitable[T]]) -> T:
    """A fresh ``start()`` for each attempt, seen through to the end like any page write."""
    return await complete_even_if_cancelled(start())


async def complete_even_if_cancelled(work: Awaitable[T]) -> T:
    """Await ``work`` to the end even when the caller is cancelled meanwhile; the cancellation
    is delivered afterwards. Keeps a transaction from being abandoned half-way by a shutdown."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
        except BaseException:
            if cancelled:  # the shutdown still comes first: not retried, not counted
                raise asyncio.CancelledError from None
            raise
    if cancelled:
        raise asyncio.CancelledError
    return result
