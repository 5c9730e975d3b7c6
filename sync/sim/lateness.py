"""How late the simulator's own event loop runs, for judging the rate limit fairly.

The simulator stamps a request's arrival when its loop reads it. While the loop is held up
(the process descheduled on a busy machine, a garbage collection, a long callback), requests
queue in the kernel and are read afterwards as one burst the client never sent
(BENCHMARKS.md, "Which side makes the over-limit arrivals"). A ticker due every ``tick_s``
measures the hold-up: the tick's lateness is time in which arrivals went unstamped. The token
bucket is given that much slack (``TokenBucket.take``), so it judges the backlog by the most
favourable arrival times inside the hold-up instead of by the moment it was read.
"""

from __future__ import annotations

import asyncio


class LoopLateness:
    """``observe`` at each tick, ``slack`` when a request is judged; ``start`` runs the ticks
    on the running loop."""

    def __init__(self, tick_s: float = 0.001) -> None:
        self.tick_s = tick_s
        self._due: float | None = None
        self._late = 0.0
        self._late_until = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def observe(self, now: float) -> None:
        """A tick ran at ``now``: remember how late it was, and when the next one is due. A
        hold-up's slack lasts as long again after it, while its backlog is served."""
        if self._due is not None and now > self._due:
            late = now - self._due
            if late >= self._late or now >= self._late_until:
                self._late, self._late_until = late, now + late
        self._due = now + self.tick_s

    def slack(self, now: float) -> float:
        """Seconds by which a request read at ``now`` may have arrived earlier: a tick overdue
        right now (the loop is catching up and has not run it yet), or a recent hold-up."""
        overdue = now - self._due if self._due is not None and now > self._due else 0.0
        recent = self._late if now < self._late_until else 0.0
        return max(overdue, recent)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.observe(loop.time())
        self._schedule(loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # A plain timer callback, not a task: it runs in the loop turn that finds it due,
        # before the request handlers that turn's reads woke up.
        assert self._due is not None
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.observe(loop.time())
        self._schedule(loop)
