"""RequestPacer: request starts keep the rate and the documented bound (rate * T + burst starts
in any T seconds), even when the loop wakes waiters late.

The schedule is driven by a virtual clock, so every start time is exact: the intervals and
delays below are powers of two, which floating point adds without rounding.
"""

from __future__ import annotations

import asyncio

import pytest

from sync.api.pacing import RequestPacer


class VirtualClock:
    """Time that moves only when the pacer sleeps or a caller does work.

    A sleep returns ``late`` seconds after it was due, as on a loop kept busy by page parsing.
    """

    def __init__(self, late: float = 0.0) -> None:
        self.now = 0.0
        self.late = late

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is

    def work(self, seconds: float) -> None:
        """A caller busy for ``seconds`` between requests (it blocks the loop meanwhile)."""
        self.now += seconds


def paced(rate: float, clock: VirtualClock, burst: int = 2) -> RequestPacer:
    return RequestPacer(rate, burst=burst, clock=clock.time, sleep=clock.sleep)


def _most_in_window(starts: list[float], window: float) -> int:
    most, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize(("late", "busy"), [(0.0, 0.0), (0.125, 0.0625)])
async def test_late_wake_ups_lose_no_slot_and_the_bound_holds(late: float, busy: float) -> None:
    # rate 4: one start every 0.25 s. Lateness plus work stays under one interval, the slack
    # the pacer absorbs, so every start after the first two is exactly on a shifted schedule.
    clock = VirtualClock(late=late)
    pacer = paced(4.0, clock)
    starts: list[float] = []
    for _ in range(40):
        await pacer.acquire()
        starts.append(clock.time())
        clock.work(busy)
    # After the first two, one start per interval: the long-run rate is the limit, with no
    # slot lost to the late wake-ups (a limiter without the slack would drift by late + busy
    # per request).
    assert starts == [0.0, busy] + [k * 0.25 + late for k in range(1, 39)]
    for window in (0.0, 0.25, 1.0, 5.0):
        assert _most_in_window(starts, window) <= 4.0 * window + 2


async def test_an_idle_pacer_lets_two_start_at_once_then_spaces_them() -> None:
    clock = VirtualClock()
    pacer = paced(4.0, clock)
    waited, starts = [], []
    for _ in range(4):
        waited.append(await pacer.acquire())
        starts.append(clock.time())
    assert waited == [False, False, True, True]
    assert starts == [0.0, 0.0, 0.25, 0.5]


async def test_waiters_start_first_come_first_out() -> None:
    clock = VirtualClock()
    pacer = paced(4.0, clock)
    starts: list[tuple[str, float]] = []

    async def request(name: str) -> None:
        await pacer.acquire()
        starts.append((name, clock.time()))

    await asyncio.gather(*(request(name) for name in "abcde"))
    assert starts == [("a", 0.0), ("b", 0.0), ("c", 0.25), ("d", 0.5), ("e", 0.75)]


async def test_a_new_rate_applies_to_the_next_request() -> None:
    clock = VirtualClock()
    pacer = paced(1.0, clock)
    await pacer.acquire()
    await pacer.acquire()
    pacer.set_rate(4.0)
    starts = []
    for _ in range(3):
        await pacer.acquire()
        starts.append(clock.time())
    # Two started back to back at t=0 (the bucket's capacity); at the new pace the next may
    # start one new interval after them, never at once as a third back-to-back start.
    assert starts == [0.25, 0.5, 0.75]


async def test_a_slower_rate_spaces_the_next_request_by_the_new_interval() -> None:
    clock = VirtualClock()
    pacer = paced(10.0, clock)
    await pacer.acquire()
    pacer.set_rate(1.0)  # another daemon joined: this one's share halves and more
    await pacer.acquire()
    assert clock.time() == 1.0


async def test_by_default_the_pacer_waits_on_the_event_loop_clock() -> None:
    loop = asyncio.get_running_loop()
    pacer = RequestPacer(20.0, burst=1)
    began = loop.time()
    for _ in range(3):
        await pacer.acquire()
    # Only a lower bound: a loaded machine makes the wait longer, never shorter.
    assert loop.time() - began >= 0.05 * 0.99


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan")])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        RequestPacer(rate, burst=2)


def test_a_burst_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="burst must be >= 1"):
        RequestPacer(1.0, burst=0)


@pytest.mark.parametrize("burst", [1, 3, 5])
async def test_a_burst_of_n_absorbs_lateness_up_to_n_minus_one_intervals(burst: int) -> None:
    # rate 4: one start every 0.25 s; each wake-up is late by just under burst - 1 intervals
    # (none at all for a burst of one, which keeps the strict spacing).
    late = 0.25 * (burst - 1) - 0.0625 if burst > 1 else 0.0
    clock = VirtualClock(late=late)
    pacer = paced(4.0, clock, burst=burst)
    starts: list[float] = []
    for _ in range(60):
        await pacer.acquire()
        starts.append(clock.time())
    # The schedule keeps its pace: no slot is lost to the late wake-ups (a limiter that lost
    # them would fall behind by ``late`` on every request)...
    assert starts[-1] <= 59 * 0.25 + late
    # ...and the bound holds in every window, with at most ``burst`` back to back.
    for window in (0.0, 0.25, 1.0, 5.0):
        assert _most_in_window(starts, window) <= 4.0 * window + burst
    assert _most_in_window(starts, 0.0) <= burst


async def test_an_idle_pacer_with_a_burst_of_three_lets_three_start_at_once() -> None:
    clock = VirtualClock()
    pacer = paced(4.0, clock, burst=3)
    starts = []
    for _ in range(5):
        await pacer.acquire()
        starts.append(clock.time())
    assert starts == [0.0, 0.0, 0.0, 0.25, 0.5]
