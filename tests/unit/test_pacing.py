"""RequestPacer: the long-run rate reaches the limit and no window ever holds more than the
documented bound (rate * T + 2 starts), even when the loop wakes waiters late."""

from __future__ import annotations

import asyncio
import time

import pytest

from sync.api.pacing import RequestPacer


async def _starts(pacer: RequestPacer, workers: int, total: int, busy_s: float) -> list[float]:
    """Start times of ``total`` requests from ``workers`` tasks that each hog the loop a bit."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def worker() -> None:
        while len(starts) < total:
            await pacer.acquire()
            starts.append(loop.time())
            _hog(busy_s)  # a page parse: blocks the loop, so wake-ups come late
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return starts[:total]


def _hog(seconds: float) -> None:
    """Keep the CPU (and so the event loop) busy, as parsing a page does."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def _most_in_window(starts: list[float], window: float) -> int:
    most, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("busy_s", [0.0, 0.0015])
async def test_the_pace_reaches_the_rate_and_stays_within_the_bound(busy_s: float) -> None:
    rate = 400.0
    starts = await _starts(RequestPacer(rate), workers=16, total=400, busy_s=busy_s)
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved <= rate * 1.01
    assert achieved >= rate * 0.95
    for window in (0.01, 0.1, 0.5):
        assert _most_in_window(starts, window) <= rate * window + 2


async def test_an_idle_pacer_lets_two_start_at_once_then_spaces_them() -> None:
    pacer = RequestPacer(20.0)
    assert await pacer.acquire() is False
    assert await pacer.acquire() is False
    started = time.monotonic()
    assert await pacer.acquire() is True
    assert time.monotonic() - started == pytest.approx(0.05, abs=0.03)


async def test_a_new_rate_applies_to_the_next_request() -> None:
    pacer = RequestPacer(1.0)
    await pacer.acquire()
    await pacer.acquire()
    pacer.set_rate(100.0)
    started = time.monotonic()
    await pacer.acquire()  # two seconds away at the old pace
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan")])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        RequestPacer(rate)
