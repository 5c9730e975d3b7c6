"""One customer's page write kept in flight while its next page is fetched.

A page's transaction and the request for the next page need nothing from each other: the next
``lastId`` is known once the page is parsed. On PostgreSQL a backfill's group transactions,
several round trips each, take longer than the requests, and a worker that waited for its
commit before asking for more sat idle meanwhile (BENCHMARKS.md). The order that keeps the
mirror consistent stays: a page's write starts only once the page before it has been written,
so the cursor stored never runs ahead of the rows stored, and a failed write is raised before
anything later is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sync.domain.tally import PageCounts
from sync.engine.db_retry import complete_even_if_cancelled

_Then = Callable[[PageCounts], None]


class WriteBehind:
    """At most one page write in flight; ``settle`` waits for it and hands on its counts."""

    def __init__(self) -> None:
        # The write in flight and what to do with its counts, or None.
        self._pending: tuple[asyncio.Future[PageCounts], _Then] | None = None

    def start(self, write: Awaitable[PageCounts], then: _Then) -> None:
        """Run ``write`` in the background; ``then(counts)`` runs when it is settled."""
        if self._pending is not None:
            raise RuntimeError("a page write is already in flight: settle it first")
        self._pending = asyncio.ensure_future(write), then

    async def settle(self) -> PageCounts | None:
        """The write in flight seen to its end (even if the caller is cancelled meanwhile) and
        its counts, or None when there is none. Its error, if it failed, is raised here."""
        if self._pending is None:
            return None
        (write, then), self._pending = self._pending, None
        counts = await complete_even_if_cancelled(write)
        then(counts)
        return counts
