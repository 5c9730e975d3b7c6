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


class WriteBehind:
    """At most one page write in flight; ``settle`` waits for it and hands on its counts."""

    def __init__(self) -> None:
        self._write: asyncio.Future[PageCounts] | None = None
        self._then: Callable[[PageCounts], None] | None = None

    def start(self, write: Awaitable[PageCounts], then: Callable[[PageCounts], None]) -> None:
        """Run ``write`` in the background; ``then(counts)`` runs when it is settled."""
        if self._write is not None:
            raise RuntimeError("a page write is already in flight: settle it first")
        self._write, self._then = asyncio.ensure_future(write), then

    async def settle(self) -> PageCounts | None:
        """The write in flight seen to its end (even if the caller is cancelled meanwhile) and
        its counts, or None when there is none. Its error, if it failed, is raised here."""
        if self._write is None:
            return None
        write, then = self._write, self._then
        self._write = self._then = None
        counts = await complete_even_if_cancelled(write)
        assert then is not None
        then(counts)
        return counts
