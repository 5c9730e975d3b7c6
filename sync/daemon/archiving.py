"""The daemon's archive loop: while the daemon runs, fetch the files that are due, newest
first, behind the file syncs.

It runs beside the sweeps, on its own pacer and connections, and never inside a page
transaction: the syncs write records, the loop reads what they wrote. After each round it waits
for the next sweep to finish or ``SYNC_ARCHIVE_IDLE``, whichever comes first, when the round
found nothing to do; a busy round is followed at once by the next. Files that failed are due
again after their backoff (``next_try_at``).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from sync.archive.runner import Archiver, ArchiveTally
from sync.daemon.metrics import DaemonMetrics
from sync.mirror.database import DATABASE_ERRORS, describe_db_error

log = structlog.get_logger("tanma_sync.daemon")

# Files taken per round: small, so a round ends soon after the newest files arrive and a
# fresh round starts from the newest again.
ROUND_FILES_PER_DOWNLOAD = 8


class ArchiveLoop:
    def __init__(self, archiver: Archiver, metrics: DaemonMetrics, *, idle_s: float) -> None:
        self._archiver = archiver
        self._metrics = metrics
        self._idle_s = idle_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def files_arrived(self) -> None:
        """A sweep finished: new files may be waiting."""
        self._wake.set()

    async def stop(self, timeout_s: float) -> None:
        """Stop taking files; downloads in flight get ``timeout_s`` to finish, then are
        cancelled (their temporaries are deleted, their claims expire)."""
        task = self._task
        if task is None or task.done():
            return
        self._wake.set()
        _, pending = await asyncio.wait({task}, timeout=timeout_s)
        if pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        archiver = self._archiver
        batch = ROUND_FILES_PER_DOWNLOAD * archiver.settings.sync_archive_concurrency
        await self._count_pending()
        while not archiver.stopping():
            self._wake.clear()
            try:
                tally = await archiver.run(due_only=True, limit=batch)
            except DATABASE_ERRORS as exc:
                log.warning("archive_round_failed", error=describe_db_error(exc))
                tally = ArchiveTally()
            self._count(tally)
            if tally.archived + tally.failures and not archiver.stopping():
                continue
            await self._count_pending()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_s)

    async def _count_pending(self) -> None:
        """The backlog gauge, read when a round finds nothing due (one aggregate over the
        coverage view, not one per round of downloads)."""
        try:
            coverage = await self._archiver.table.coverage()
        except DATABASE_ERRORS as exc:
            log.warning("archive_backlog_not_counted", error=describe_db_error(exc))
            return
        pending = sum(row.files for row in coverage if row.status != "archived")
        self._metrics.archive_pending.set(pending)

    def _count(self, tally: ArchiveTally) -> None:
        m = self._metrics
        if tally.archived:
            m.archive_files.labels("archived").inc(tally.archived)
            m.archive_bytes.inc(tally.bytes)
        for reason, count in tally.failed.items():
            m.archive_files.labels(reason).inc(count)
