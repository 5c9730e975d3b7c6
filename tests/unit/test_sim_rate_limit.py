"""The simulator's rate-limit accounting: its token bucket, and the slack its own loop's
lateness earns a request (sync/sim/lateness.py)."""

from __future__ import annotations

import asyncio

from sync.sim.lateness import LoopLateness
from sync.sim.stats import TokenBucket


def test_the_bucket_admits_its_capacity_then_the_rate() -> None:
    bucket = TokenBucket(rate=100.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == ["admitted"] * 3 + ["refused"]
    assert bucket.take(0.01) == "admitted"  # one token refilled in 10 ms
    assert bucket.take(0.01) == "refused"


def test_without_slack_a_long_gap_refills_only_up_to_the_capacity() -> None:
    bucket = TokenBucket(rate=100.0, capacity=3, now=0.0)
    outcomes = [bucket.take(1.0) for _ in range(5)]
    assert outcomes == ["admitted"] * 3 + ["refused"] * 2


def test_slack_admits_a_backlog_read_at_once_as_if_it_had_arrived_spread_out() -> None:
    # Full at 0; requests that arrived every 10 ms during a 50 ms hold-up are all read at 50 ms.
    bucket = TokenBucket(rate=100.0, capacity=3, now=0.0)
    outcomes = [bucket.take(0.05, slack=0.05) for _ in range(8)]
    assert outcomes == ["admitted"] * 3 + ["credited"] * 5
    # More than the capacity plus the hold-up's refill is still over the limit.
    assert bucket.take(0.05, slack=0.05) == "refused"


def test_the_credit_ends_with_the_slack() -> None:
    bucket = TokenBucket(rate=100.0, capacity=3, now=0.0)
    assert bucket.take(0.05, slack=0.05) == "admitted"  # 7 tokens left above a capacity of 3
    # Without slack the bucket is back at its capacity: 3 more, the last of them on credit.
    after = [bucket.take(0.05) for _ in range(5)]
    assert after == ["admitted"] * 2 + ["credited"] + ["refused"] * 2


def test_lateness_is_the_overdue_tick_then_lasts_as_long_again() -> None:
    watch = LoopLateness(tick_s=0.005)
    watch.observe(1.000)  # next tick due at 1.005
    assert watch.slack(1.004) == 0.0
    # The loop was held up until 1.045: a request read before the tick runs sees it overdue.
    assert abs(watch.slack(1.045) - 0.040) < 1e-9
    watch.observe(1.045)
    assert abs(watch.slack(1.046) - 0.040) < 1e-9
    assert abs(watch.slack(1.084) - 0.040) < 1e-9
    for tick in range(8):
        watch.observe(1.050 + tick * 0.005)  # on time again: 1.050 … 1.085
    assert watch.slack(1.086) < 1e-9


def test_a_smaller_lateness_does_not_cut_short_a_larger_ones_slack() -> None:
    watch = LoopLateness(tick_s=0.005)
    watch.observe(0.0)
    watch.observe(0.105)  # 100 ms late: slack 0.1 until 0.205
    watch.observe(0.112)  # 2 ms late
    assert abs(watch.slack(0.113) - 0.100) < 1e-9
    watch.observe(0.117)
    assert abs(watch.slack(0.2) - 0.100) < 1e-9


async def test_the_ticks_see_a_blocked_loop() -> None:
    watch = LoopLateness(tick_s=0.005)
    watch.start()
    try:
        await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        blocked_until = loop.time() + 0.06
        while loop.time() < blocked_until:
            pass  # hold the loop, as a descheduled process would
        assert watch.slack(loop.time()) >= 0.05
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert watch.slack(loop.time()) >= 0.05
    finally:
        watch.stop()
