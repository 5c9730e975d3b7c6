"""How a pass reports progress: a rich bar in a terminal, a periodic log line otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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

log = structlog.get_logger("tanma_sync.progress")


class PassProgress:
    """Implements the engine's ProgressSink; use as a context manager around the pass."""

    def __init__(
        self, label: str, requests: Callable[[], int], *, interval_s: float = 10.0
    ) -> None:
        self._label = label
        self._requests = requests
        self._interval = interval_s
        self._records = 0
        self._done = 0
        self._failed = 0
        self._total = 0
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "customers · {task.fields[records]:,} records · {task.fields[rate]:.0f} req/s"
                ),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> PassProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=None, records=0, rate=0.0)
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.stop()

    def customers_total(self, total: int) -> None:
        self._total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def page_done(self, records: int) -> None:
        self._records += records
        self._refresh()

    def customer_done(self, ok: bool) -> None:
        self._done += 1
        self._failed += 0 if ok else 1
        self._refresh()

    def _refresh(self) -> None:
        now = time.monotonic()
        rate = self._requests() / max(now - self._started, 1e-6)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self._done, records=self._records, rate=rate)
        elif now - self._last_line >= self._interval:
            self._last_line = now
            log.info(
                "progress",
                customers_done=self._done,
                customers_total=self._total,
                customers_failed=self._failed,
                records=self._records,
                requests_per_s=round(rate, 1),
            )
