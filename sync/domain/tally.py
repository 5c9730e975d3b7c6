"""What a pass counts: per page, per customer and per run. The run counters are the columns of
``sync_runs`` of the same names; a test checks the table has every one of them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum


class RunStatus(StrEnum):
    """A run's ``sync_runs.status``; what every report, metric and exit status is taken from."""

    RUNNING = "running"
    OK = "ok"  # every customer synced, nothing set aside
    PARTIAL = "partial"  # ran to its end, but some customers failed or records were set aside
    FAILED = "failed"  # stopped by a fatal error
    INTERRUPTED = "interrupted"  # stopped (a signal, a shutdown, lost leases) before its end
    ABANDONED = "abandoned"  # its process is gone; marked so by a later run (mirror/owners.py)

    @property
    def ran_to_its_end(self) -> bool:
        return self in (RunStatus.OK, RunStatus.PARTIAL)


@dataclass(slots=True)
class PageCounts:
    """What one page (or a customer's pages added up) did to the mirror's records."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0

    def add(self, other: PageCounts) -> None:
        for name in RECORD_ACTIONS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


# Every field of PageCounts, as the record counters and metric labels name them.
RECORD_ACTIONS = tuple(f.name for f in fields(PageCounts))


@dataclass
class RunTotals:
    """A run's counters; each field is a ``sync_runs`` column."""

    customers_ok: int = 0
    customers_failed: int = 0
    records_inserted: int = 0
    records_updated: int = 0
    records_unchanged: int = 0
    records_rejected: int = 0
    records_deleted: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0  # request attempts that failed (retried or not)

    def add_page(self, counts: PageCounts) -> None:
        for name in RECORD_ACTIONS:
            column = f"records_{name}"
            setattr(self, column, getattr(self, column) + getattr(counts, name))

    def add_customer(self, *, failed: bool, finished: bool) -> None:
        """Count a customer whose pass ended; one handed back unfinished counts as neither."""
        if failed:
            self.customers_failed += 1
        elif finished:
            self.customers_ok += 1

    @property
    def finished_status(self) -> RunStatus:
        """The status of a pass that ran to its end: partial when any customer failed or any
        record was set aside, else ok."""
        return RunStatus.PARTIAL if self.customers_failed or self.records_rejected else RunStatus.OK


RUN_COUNTERS = tuple(f.name for f in fields(RunTotals))
