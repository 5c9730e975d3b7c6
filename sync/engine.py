"""A sync pass over many customers: workers pull customers, page through each one's list with
the pure pager, and hand every page to the store. This module decides nothing about HTTP
answers or SQL; it wires the pager, the client and the store together and keeps the tally."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Protocol, TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_chain,
    wait_fixed,
)

from sync.client import TanmaClient
from sync.db import DATABASE_ERRORS, describe_db_error, is_transient_db_error
from sync.errors import CustomerError, FatalError, LeaseLost, TransientError
from sync.models import utc_now
from sync.pager import PageVerdict, PassMode, begin_pass, next_last_id, step
from sync.records import FileRecord, RejectedRecord, parse_record
from sync.settings import Settings
from sync.store import CustomerKey, Fence, MirrorStore, PageCounts

log = structlog.get_logger("tanma_sync.engine")

# Several customers in a row failing on the database means the database is gone, not the data.
_DB_FAILURES_BEFORE_GIVING_UP = 3
# A dropped connection (a server restart, its backends terminated) fails every worker's write
# at once; a page write or cursor read that lost its connection is tried again in place first.
# Waits of 0.25, 0.5, 1 and 2 s, 3.75 s in all: a dropped connection is back at once and a
# quick restart within that, while a lasting outage still stops the run within seconds.
DB_RETRY_WAITS_S = (0.25, 0.5, 1.0, 2.0)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Assignment:
    """One customer to sync, and how."""

    customer: CustomerKey
    mode: PassMode


@dataclass(slots=True)
class CustomerOutcome:
    """What one customer's pass came to. ``stopped`` means it was handed back unfinished (a
    shutdown, a lost lease): not a failure, its cursor is consistent and the next pass resumes."""

    error: str | None = None
    stopped: str | None = None
    counts: PageCounts = field(default_factory=PageCounts)

    @property
    def ok(self) -> bool:
        return self.error is None and self.stopped is None


class CustomerFeed(Protocol):
    """Where a pass's workers get customers from: a fixed list (the CLI) or leases (the daemon)."""

    async def next(self) -> Assignment | None: ...

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None: ...

    def may_continue(self, customer: CustomerKey) -> str | None:
        """None to go on with this customer's next page, else why not."""
        ...

    def deadline(self, customer: CustomerKey) -> float | None:
        """Loop time by which the customer must be let go (its lease runs out), or None."""
        ...

    def fence(self, customer: CustomerKey) -> Fence | None:
        """A check run inside every page transaction, or None."""
        ...


class ListFeed:
    """The customers of a command-line pass, each once, all in one mode."""

    def __init__(self, customers: Sequence[CustomerKey], mode: PassMode) -> None:
        self._pending = deque(Assignment(c, mode) for c in customers)

    async def next(self) -> Assignment | None:
        return self._pending.popleft() if self._pending else None

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None:
        pass

    def may_continue(self, customer: CustomerKey) -> str | None:
        return None

    def deadline(self, customer: CustomerKey) -> float | None:
        return None

    def fence(self, customer: CustomerKey) -> Fence | None:
        return None


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

    def add_outcome(self, outcome: CustomerOutcome) -> None:
        """Count the customer; its pages were counted as they committed."""
        if outcome.error is not None:
            self.customers_failed += 1
        elif outcome.stopped is None:
            self.customers_ok += 1


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
        # Ends of runs the database refused to record; written before the next run starts, so
        # a long-lived daemon does not leave its own runs `running` after an outage.
        self._unrecorded: list[tuple[int, str, dict[str, int], str | None]] = []

    async def run_pass(
        self,
        mode: PassMode,
        customers: Sequence[CustomerKey] | CustomerFeed,
        *,
        worker_id: str | None = None,
    ) -> RunReport:
        """Sync every customer the feed hands out (or every one listed); returns the tally.

        Raises FatalError to stop everything.
        """
        started = asyncio.get_running_loop().time()
        feed = ListFeed(customers, mode) if isinstance(customers, Sequence) else customers
        known_total = len(customers) if isinstance(customers, Sequence) else None
        # Here rather than in `status`: `status` only reads (a read-only role can run it, and
        # it never waits on a pass's write lock), while every pass writes anyway.
        while self._unrecorded:
            await self._store.finish_run(*self._unrecorded[0])
            self._unrecorded.pop(0)
        abandoned = await self._store.close_abandoned_runs(self._settings.sync_lease_ttl)
        if abandoned:
            log.warning("runs_abandoned", run_ids=sorted(abandoned))
        run_id = await self._store.start_run(mode.value, known_total or 0, worker_id=worker_id)
        totals = RunTotals()
        failures: list[str] = []
        handed_out = 0
        handed_back: list[str] = []
        if known_total is not None:
            self._progress.customers_total(known_total)
        log.info("pass_started", run_id=run_id, mode=mode.value, customers=known_total)
        client = self._client
        before = (client.requests, client.retries, client.failed_requests)

        async def worker() -> None:
            nonlocal handed_out
            while (assignment := await feed.next()) is not None:
                handed_out += 1
                outcome = await self._sync_customer(assignment, feed, run_id, totals)
                totals.add_outcome(outcome)
                if outcome.error is not None:
                    failures.append(f"customer {assignment.customer.label}: {outcome.error}")
                elif outcome.stopped is not None:
                    handed_back.append(outcome.stopped)
                await feed.finished(assignment, outcome)
                self._progress.customer_done(outcome.error is None)

        workers = self._settings.sync_concurrency
        if known_total is not None:
            workers = min(workers, max(1, known_total))
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
            if handed_back:
                # Customers let go unfinished (a shutdown, a lost lease): the pass did not end.
                status = "interrupted"
                note = f"{len(handed_back)} customers handed back unfinished ({handed_back[0]})"
                summary = f"{note}; {summary}" if summary else note
        finally:
            totals.requests = client.requests - before[0]
            totals.retries = client.retries - before[1]
            totals.errors = client.failed_requests - before[2]
            total = known_total if known_total is not None else handed_out
            await self._finish(run_id, status, totals, summary, total)
        elapsed = asyncio.get_running_loop().time() - started
        report = RunReport(run_id, mode, known_total or handed_out, totals, elapsed, failures)
        log.info("pass_finished", run_id=run_id, status=status, **asdict(totals))
        return report

    async def _finish(
        self, run_id: int, status: str, totals: RunTotals, summary: str | None, customers: int
    ) -> None:
        end = (run_id, status, asdict(totals) | {"customers_total": customers}, summary)
        try:
            await _complete_even_if_cancelled(self._store.finish_run(*end))
        except DATABASE_ERRORS as exc:
            self._unrecorded.append(end)
            log.error("run_not_recorded", run_id=run_id, error=describe_db_error(exc))

    async def _sync_customer(
        self, assignment: Assignment, feed: CustomerFeed, run_id: int, totals: RunTotals
    ) -> CustomerOutcome:
        """One customer's pass; what it came to is in the outcome, never raised (but fatal)."""
        customer = assignment.customer
        outcome = CustomerOutcome()
        bound = log.bind(customer=customer.label, run_id=run_id)
        reason: str | None = None
        try:
            outcome.stopped = await self._walk(
                assignment, feed, run_id, (outcome.counts, totals), bound
            )
            self._db_failures_in_a_row = 0
        except LeaseLost as exc:
            outcome.stopped = str(exc)
        except _CustomerStuck as exc:
            reason = str(exc)
        except (TransientError, CustomerError) as exc:
            reason = f"gave up for this pass: {exc}"
        except DATABASE_ERRORS as exc:
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
        if outcome.stopped is not None:
            bound.info("customer_handed_back", reason=outcome.stopped)
        if reason is None:
            return outcome
        outcome.error = reason
        bound.warning("customer_failed", reason=reason)
        try:
            await self._store.record_failure(customer.ref, reason)
        except DATABASE_ERRORS as exc:
            bound.error("failure_not_recorded", error=describe_db_error(exc))
        return outcome

    async def _walk(
        self,
        assignment: Assignment,
        feed: CustomerFeed,
        run_id: int,
        tallies: tuple[PageCounts, RunTotals],
        bound: structlog.typing.FilteringBoundLogger,
    ) -> str | None:
        """Page through one customer. Returns None when complete, else why it stopped early;
        raises for failures."""
        customer, mode = assignment.customer, assignment.mode
        page_size = self._settings.sync_page_size
        lookback = self._settings.lookback_ids
        stored = await _retry_db(lambda: self._store.load_cursor(customer.ref), bound)
        # A resumed pass walks on from a top that went stale while it was interrupted; when it
        # ends, one fresh look from the top (usually a single request) brings the customer up
        # to date as of this pass.
        top_up = stored.in_pass
        cursor = begin_pass(stored, mode, lookback, utc_now())
        fence = feed.fence(customer)
        while True:
            halt = feed.may_continue(customer)
            if halt is not None:
                return halt
            try:
                # The request must not outlive the lease: past it, another worker may start.
                async with asyncio.timeout_at(feed.deadline(customer)):
                    page = await self._client.list_files(customer, next_last_id(cursor), page_size)
            except TimeoutError:
                return "its lease ran out during a request"
            records, rejected = split_items(page.items, strings_checked=page.strings_checked)
            outcome = step(
                cursor,
                [r.id for r in records],
                len(page.items),
                requested_size=page_size,
                reported_size=page.reported_page_size,
                stop_on_short_page=self._settings.sync_stop_on_short_page,
            )
            # Once a page is fetched its transaction commits or rolls back whole, even if a
            # shutdown cancels this worker meanwhile. Writing it again is safe: rows and cursor
            # are upserts in the same transaction, so a commit whose answer was lost repeats.
            write = partial(
                self._store.save_page,
                customer,
                records,
                rejected,
                outcome.cursor,
                run_id=run_id,
                completed=outcome.verdict is PageVerdict.COMPLETE,
                vanished=outcome.vanished,
                fence=fence,
            )
            counts = await _retry_db(partial(_whole, write), bound)
            _add_counts(tallies[0], counts)
            tallies[1].add_page(counts)
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
                raise _CustomerStuck(outcome.detail)
            cursor = outcome.cursor


class _CustomerStuck(Exception):
    """The pager cannot go on with this customer (a cursor that does not advance, …)."""


async def _retry_db(
    call: Callable[[], Awaitable[T]], bound: structlog.typing.FilteringBoundLogger
) -> T:
    """``call()`` again after a short wait while it fails with a database error a retry may
    cure (see is_transient_db_error); any other error, or the last one, is raised."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(len(DB_RETRY_WAITS_S) + 1),
        wait=wait_chain(*(wait_fixed(s) for s in DB_RETRY_WAITS_S)),
        retry=retry_if_exception(is_transient_db_error),
        before_sleep=_db_retry_logger(bound),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")


def _db_retry_logger(
    bound: structlog.typing.FilteringBoundLogger,
) -> Callable[[RetryCallState], None]:
    def hook(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        bound.warning(
            "database_retry",
            attempt=state.attempt_number,
            error=describe_db_error(error) if error is not None else None,
            wait_s=round(state.next_action.sleep, 3) if state.next_action else 0.0,
        )

    return hook


async def _whole(start: Callable[[], Awaitable[T]]) -> T:
    """A fresh ``start()`` for each attempt, seen through to the end like any page write."""
    return await _complete_even_if_cancelled(start())


async def _complete_even_if_cancelled(work: Awaitable[T]) -> T:
    """Await ``work`` to the end even when the caller is cancelled meanwhile; the cancellation
    is delivered afterwards. Keeps a transaction from being abandoned half-way by a shutdown."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
        except BaseException:
            if cancelled:  # the shutdown still comes first: not retried, not counted
                raise asyncio.CancelledError from None
            raise
    if cancelled:
        raise asyncio.CancelledError
    return result


def _add_counts(total: PageCounts, page: PageCounts) -> None:
    total.inserted += page.inserted
    total.updated += page.updated
    total.unchanged += page.unchanged
    total.rejected += page.rejected
    total.deleted += page.deleted


def _first_fatal(group: BaseExceptionGroup) -> FatalError | None:
    for exc in group.exceptions:
        if isinstance(exc, FatalError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_fatal(exc)
            if found is not None:
                return found
    return None


def split_items(
    items: Sequence[object], *, strings_checked: bool = False
) -> tuple[list[FileRecord], list[RejectedRecord]]:
    records: list[FileRecord] = []
    rejected: list[RejectedRecord] = []
    for item in items:
        parsed = parse_record(item, strings_checked=strings_checked)
        (records if isinstance(parsed, FileRecord) else rejected).append(parsed)  # type: ignore[arg-type]
    return records, rejected
