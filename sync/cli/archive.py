"""``tanma-sync archive``: one archive pass from the command line, with a progress display, and
the coverage lines that ``status`` shows."""

from __future__ import annotations

import os
import socket
import sys
import time
from types import TracebackType

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sync.archive.runner import (
    Archiver,
    ArchiveTally,
    archive_fetcher,
    archive_objects,
)
from sync.config.settings import Settings
from sync.mirror.archive import CoverageRow
from sync.mirror.store import MirrorStore

log = structlog.get_logger("tanma_sync.archive")


class ArchiveProgress:
    """A bar in a terminal (files, bytes, ETA); a log line every ``interval_s`` otherwise."""

    def __init__(self, total: int, *, interval_s: float = 10.0) -> None:
        self._total = total
        self._interval = interval_s
        self._last_line = time.monotonic()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("[bold]archive"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "files · {task.fields[megabytes]:,.1f} MB · {task.fields[failed]} failed"
                ),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> ArchiveProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("archive", total=self._total, failed=0, megabytes=0.0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def file_done(self, tally: ArchiveTally) -> None:
        done = tally.archived + tally.failures
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, completed=done, failed=tally.failures, megabytes=tally.bytes / 1e6
            )
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            log.info(
                "archive_progress",
                files_done=done,
                files_total=self._total,
                failed=tally.failures,
                bytes=tally.bytes,
            )


async def archive_pass(settings: Settings, store: MirrorStore, limit: int | None) -> ArchiveTally:
    objects = archive_objects(settings)
    await objects.check()
    await objects.sweep_temporaries()
    pending = await store.archive.pending_count(due_only=False)
    total = pending if limit is None else min(limit, pending)
    claimer = f"cli:{socket.gethostname()}:{os.getpid()}"
    log.info("archive_started", pending=pending, store=objects.location.describe())
    async with archive_fetcher(settings) as fetcher:
        with ArchiveProgress(total) as progress:
            archiver = Archiver(
                settings,
                store.archive,
                objects,
                fetcher,
                claimer=claimer,
                on_file=progress.file_done,
            )
            tally = await archiver.run(due_only=False, limit=limit)
    log.info("archive_finished", archived=tally.archived, failed=tally.failures, bytes=tally.bytes)
    return tally


def describe_tally(tally: ArchiveTally, seconds: float) -> str:
    rate = tally.bytes / seconds / 1e6 if seconds > 0 else 0.0
    failed = ", ".join(f"{reason} {n}" for reason, n in sorted(tally.failed.items()))
    return (
        f"archive: {tally.archived} files archived ({tally.stored} new objects, "
        f"{tally.archived - tally.stored} already stored), {tally.bytes:,} bytes in "
        f"{seconds:.2f}s = {rate:.1f} MB/s; {tally.failures} failed"
        + (f" ({failed})" if failed else "")
    )


def describe_coverage(rows: list[CoverageRow], stored: dict[str, int]) -> str:
    """One line for ``status``: archived, pending and failed files (by reason), bytes, and
    the distinct contents in the store."""
    files = {"archived": 0, "pending": 0, "failed": 0}
    volume = dict.fromkeys(files, 0)
    reasons = []
    for row in rows:
        files[row.status] = files.get(row.status, 0) + row.files
        volume[row.status] = volume.get(row.status, 0) + row.bytes
        if row.status == "failed":
            reasons.append(f"{row.reason} {row.files}")
    failed = f" ({', '.join(reasons)})" if reasons else ""
    return (
        f"archive: {files['archived']} files archived ({volume['archived']:,} bytes), "
        f"{files['pending']} pending, {files['failed']} failed{failed}; the store holds "
        f"{stored['objects']} distinct contents ({stored['bytes']:,} bytes)"
    )
