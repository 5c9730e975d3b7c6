"""A sync pass over many customers: workers pull customers, page through each one's list with
the pure pager, and hand every page to the store. This module decides nothing about HTTP
answers or SQL; it wires the pager, the client and the store together and keeps the tally."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

from sync.client import TanmaClient
from sync.db import describe_db_error
from sync.errors import CustomerError, FatalError, TransientError
from sync.models import utc_now
from sync.pager import PageVerdict, PassMode, begin_pass, next_last_id, step
from sync.records import FileRecord, RejectedRecord, parse_record
from sync.settings import Settings
from sync.store import CustomerKey, MirrorStore, PageCounts

log = structlog.get_logger("tanma_sync.engine")

# Several customers in a row failing on the database means the database is gone, not the data.
_DB_FAILURES_BEFORE_GIVING_UP = 3


class ProgressSink(Protocol):
    def customers_total(self, total: int) -> None: ...
    def page_done(self, records: int) -> None: ...
    def customer_done(self, ok: bool) -> None: ...


class _NoProgress:
    def customers_total(self, total: int) -> None:
        pass

    def page_done(self, records: int) -> None:
        pass

    def customer_done(self, ok: bool) -> None:
        pass


@dataclass
class RunTotals:
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

    @property
    def status(self) -> str:
        """'partial' when any customer failed or any record was set aside."""
        return "partial" if self.customers_failed or self.records_rejected else "ok"

    def add_page(self, counts: PageCounts) -> None:
        self.records_inserted += counts.inserted
        self.records_updated += counts.updated
        self.records_unchanged += counts.unchanged
        self.records_rejected += counts.rejected
        self.records_deleted += counts.deleted


@dataclass
class RunReport:
    run_id: int
    mode: PassMode
    customers: int
    totals: RunTotals
    seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.totals.status


class SyncEngine:
    def __init__(
        self,
        settings: Settings,
        store: MirrorStore,
        client: TanmaClient,
        progress: ProgressSink | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._progress = progress or _NoProgress()
        self._db_failures_in_a_row = 0

    async def run_pass(self, mode: PassMode, customers: Sequence[CustomerKey]) -> RunReport:
        """Sync every customer given; returns the tally. Raises FatalError to stop everything."""
        started = asyncio.get_running_loop().time()
        run_id = await self._store.start_run(mode.value, len(customers))
        totals = RunTotals()
        failures: list[str] = []
        self._progress.customers_total(len(customers))
        log.info("pass_started", run_id=run_id, mode=mode.value, customers=len(customers))
        queue: asyncio.Queue[CustomerKey] = asyncio.Queue()
        for customer in customers:
            queue.put_nowait(customer)
        client = self._client
        before = (client.requests, client.retries, client.failed_requests)

        async def worker() -> None:
            while True:
                try:
                    customer = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                error = await self._sync_customer(customer, mode, run_id, totals)
                if error is None:
                    totals.customers_ok += 1
                else:
                    totals.customers_failed += 1
                    failures.append(f"customer {customer.label}: {error}")
                self._progress.customer_done(error is None)

        workers = min(self._settings.sync_concurrency, max(1, len(customers)))
        status, summary = "failed", None
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except BaseExceptionGroup as group:
            fatal = _first_fatal(group)
            if fatal is None:
                raise
            summary = str(fatal)
            raise fatal from None
        except asyncio.CancelledError:
            status, summary = "interrupted", "interrupted before the pass finished"
            raise
        else:
            status = totals.status
            summary = "; ".join(failures[:5]) + (" …" if len(failures) > 5 else "") or None
        finally:
            totals.requests = client.requests - before[0]
            totals.retries = client.retries - before[1]
            totals.errors = client.failed_requests - before[2]
            await self._finish(run_id, status, totals, summary)
        elapsed = asyncio.get_running_loop().time() - started
        report = RunReport(run_id, mode, len(customers), totals, elapsed, failures)
        log.info("pass_finished", run_id=run_id, status=status, **asdict(totals))
        return report

    async def _finish(
        self, run_id: int, status: str, totals: RunTotals, summary: str | None
    ) -> None:
        try:
            await self._store.finish_run(run_id, status, asdict(totals), summary)
        except SQLAlchemyError as exc:
            log.error("run_not_recorded", run_id=run_id, error=describe_db_error(exc))

    async def _sync_customer(
        self, customer: CustomerKey, mode: PassMode, run_id: int, totals: RunTotals
    ) -> str | None:
        """One customer's pass. Returns None when it completed, else why it stopped."""
        bound = log.bind(customer=customer.label, run_id=run_id)
        try:
            reason = await self._walk(customer, mode, run_id, totals, bound)
            self._db_failures_in_a_row = 0
        except (TransientError, CustomerError) as exc:
            reason = f"gave up for this pass: {exc}"
        except SQLAlchemyError as exc:
            self._db_failures_in_a_row += 1
            reason = f"database error: {describe_db_error(exc)}"
            if self._db_failures_in_a_row >= _DB_FAILURES_BEFORE_GIVING_UP:
                raise FatalError(f"the database keeps failing ({reason})") from None
        except FatalError:
            raise
        except Exception as exc:
            # A bug must cost one customer's pass, not the run; the cursor is still consistent
            # because nothing is written outside save_page's transaction.
            bound.exception("internal_error")
            reason = f"internal error ({type(exc).__name__}: {exc})"
        if reason is None:
            return None
        bound.warning("customer_failed", reason=reason)
        try:
            await self._store.record_failure(customer.ref, reason)
        except SQLAlchemyError as exc:
            bound.error("failure_not_recorded", error=describe_db_error(exc))
        return reason

    async def _walk(
        self,
        customer: CustomerKey,
        mode: PassMode,
        run_id: int,
        totals: RunTotals,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> str | None:
        page_size = self._settings.sync_page_size
        lookback = self._settings.lookback_ids
        stored = await self._store.load_cursor(customer.ref)
        # A resumed pass walks on from a top that went stale while it was interrupted; when it
        # ends, one fresh look from the top (usually a single request) brings the customer up
        # to date as of this pass.
        top_up = stored.in_pass
        cursor = begin_pass(stored, mode, lookback, utc_now())
        while True:
            page = await self._client.list_files(customer, next_last_id(cursor), page_size)
            records, rejected = split_items(page.items)
            outcome = step(
                cursor,
                [r.id for r in records],
                len(page.items),
                requested_size=page_size,
                reported_size=page.reported_page_size,
                stop_on_short_page=self._settings.sync_stop_on_short_page,
            )
            counts = await self._store.save_page(
                customer,
                records,
                rejected,
                outcome.cursor,
                run_id=run_id,
                completed=outcome.verdict is PageVerdict.COMPLETE,
                vanished=outcome.vanished,
            )
            totals.add_page(counts)
            self._progress.page_done(len(records))
            for item in rejected:
                bound.warning("record_rejected", reason=item.reason, record_id=item.record_id)
            if outcome.verdict is PageVerdict.COMPLETE:
                bound.debug("customer_done", detail=outcome.detail, deleted=counts.deleted)
                if top_up:
                    top_up = False
                    cursor = begin_pass(outcome.cursor, PassMode.INCREMENTAL, lookback, utc_now())
                    continue
                return None
            if outcome.verdict is PageVerdict.STUCK:
                return outcome.detail
            cursor = outcome.cursor


def _first_fatal(group: BaseExceptionGroup) -> FatalError | None:
    for exc in group.exceptions:
        if isinstance(exc, FatalError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_fatal(exc)
            if found is not None:
                return found
    return None


def split_items(items: Sequence[object]) -> tuple[list[FileRecord], list[RejectedRecord]]:
    records: list[FileRecord] = []
    rejected: list[RejectedRecord] = []
    for item in items:
        parsed = parse_record(item)
        (records if isinstance(parsed, FileRecord) else rejected).append(parsed)  # type: ignore[arg-type]
    return records, rejected
