"""Request pacing for the whole process: at most ``rate`` request starts per second.

This is the generic cell rate algorithm (a token bucket of capacity ``burst``, refilled at
``rate``): request starts are spaced ``1/rate`` apart on a schedule, and a start that the event
loop made late by less than ``burst - 1`` intervals does not push the schedule back. A
capacity-one limiter loses every such delay for good, which on a busy loop cost over 8% of the
budget at 200 requests/s, and capacity two still lost 6% of it in a SQLite backfill at that
rate (see BENCHMARKS.md). The bound it keeps: in any window of T seconds at most
``rate * T + burst`` requests start, and never more than ``burst`` back to back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class RequestPacer:
    """``await pacer.acquire()`` before each request; waiters are served first come, first out."""

    def __init__(
        self,
        rate: float,
        *,
        burst: int,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        """``burst`` (at least 1) is the bucket's capacity (``SYNC_RATE_BURST``). ``clock``
        (seconds) and ``sleep`` default to the running event loop's clock and
        ``asyncio.sleep``; a test passes virtual ones to drive the schedule exactly."""
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self._slack = burst - 1  # intervals a start may come early on the schedule
        self._clock = clock
        self._sleep = sleep
        self._interval = 0.0
        self._next = float("-inf")  # when the next request is due on the schedule
        self._last = float("-inf")  # when the last request started
        self.set_rate(rate)
        self._lock: asyncio.Lock | None = None

    def set_rate(self, rate: float) -> None:
        """Change the pace: the next request may start one new interval after the last one
        (its due time is later by the slack ``acquire`` allows), whether the rate went up or
        down, so a change never lets one more request start back to back."""
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if 1.0 / rate == self._interval:
            return  # set on every heartbeat: an unchanged share keeps the schedule
        self._interval = 1.0 / rate
        self._next = self._last + (1 + self._slack) * self._interval

    async def acquire(self) -> bool:
        """Wait for this request's turn; True when it had to wait."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        clock = self._clock or asyncio.get_running_loop().time
        sleep = self._sleep or asyncio.sleep
        async with self._lock:  # FIFO: one waiter sleeps at a time, no thundering herd
            now = clock()
            # Due up to ``burst - 1`` intervals early is allowed: the slack that absorbs a late
            # wake-up of the requests before without losing their slots.
            wait = self._next - self._slack * self._interval - now
            if wait > 0:
                await sleep(wait)
                now = clock()
            self._next = max(self._next, now) + self._interval
            self._last = now
            return wait > 0
