"""A sync pass over many customers: workers pull customers from a feed, page through each one's
list with the pure pager, and hand every page to the store. This module decides nothing about
HTTP answers or SQL; it wires the pager, the client and the store together and keeps the tally."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TypeVar

import structlog

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.domain.breaker import BreakerLimits, CircuitBreaker
from sync.domain.customers import CustomerKey
from sync.domain.deletion_guard import DeletionGuard, walk_ended_early
from sync.domain.errors import (
    ApiUnreachable,
    CustomerError,
    FatalError,
    LeaseLost,
    TransientError,
)
from sync.domain.pager import PageVerdict, PassMode, begin_pass, next_last_id, step
from sync.domain.records import FileRecord, RejectedRecord, parse_record
from sync.domain.tally import PageCounts, RunStatus, RunTotals
from sync.engine.db_retry import complete_even_if_cancelled, retry_db, whole
from sync.engine.feeds import (
    Assignment,
    CustomerFeed,
    CustomerOutcome,
    ListFeed,
    NoProgress,
    ProgressSink,
)
from sync.engine.write_behind import WriteBehind
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.models import utc_now
from sync.mirror.store import MirrorStore

log = structlog.get_logger("tanma_sync.engine")

# Several customers in a row failing on the database means the database is gone, not the data.
_DB_FAILURES_BEFORE_GIVING_UP = 3


@dataclass
class RunReport:
    """A finished pass. ``status`` is the one recorded in ``sync_runs`` for it."""

    run_id: int
    mode: PassMode
    status: RunStatus
    customers: int
    totals: RunTotals
    seconds: float
    failures: list[str] = field(default_factory=list)
    # Why the circuit breaker stopped the pass (the API down), or None.
    unreachable: str | None = None
    # Customers whose first completed pass this was and whose list came back empty: an id
    # Tanmarket does not know answers just like a customer without files.
    customers_empty: int = 0


class SyncEngine:
    def __init__(
        self,
        settings: Settings,
        store: MirrorStore,
        client: TanmaClient,
        progress: ProgressSink | None = None,
        *,
        allow_mass_delete: bool = False,
    ) -> None:
        self._settings = settings
        # `customer reconcile --allow-mass-delete`: this engine's reconciles skip the guard.
        self._allow_mass_delete = allow_mass_delete
        self._store = store
        self._client = client
        self._progress = progress or NoProgress()
        self._db_failures_in_a_row = 0
        # Ends of runs the database refused to record; written before the next run starts, so
        # a long-lived daemon does not leave its own runs `running` after an outage.
        self._unrecorded: list[tuple[int, RunStatus, dict[str, int], str | None]] = []
        # The running pass's breaker (health reads what it says), or None between passes.
        self.breaker: CircuitBreaker | None = None

    async def run_pass(
        self,
        mode: PassMode,
        customers: Sequence[CustomerKey] | CustomerFeed,
        *,
        worker_id: str | None = None,
        known_total: int | None = None,
        membership: AbstractAsyncContextManager[None] | None = None,
    ) -> RunReport:
        """Sync every customer the feed hands out (or every one listed); returns the tally.
        ``known_total`` is how many a feed will hand out, when that is known beforehand.
        ``membership`` is held around the workers, once the run is recorded: a process killed
        after joining the fleet then leaves a run row that says whose leases to free.

        Raises FatalError to stop everything.
        """
        started = asyncio.get_running_loop().time()
        feed = ListFeed(customers, mode) if isinstance(customers, Sequence) else customers
        if isinstance(customers, Sequence):
            known_total = len(customers)
        # Here rather than in `status`: `status` only reads (a read-only role can run it, and
        # it never waits on a pass's write lock), while every pass writes anyway.
        while self._unrecorded:
            await self._store.runs.finish(*self._unrecorded[0])
            self._unrecorded.pop(0)
        abandoned = await self._store.runs.close_abandoned(self._settings.sync_lease_ttl)
        if abandoned:
            log.warning("runs_abandoned", run_ids=sorted(abandoned))
        run_id = await self._store.runs.start(mode.value, known_total or 0, worker_id=worker_id)
        totals = RunTotals()
        failures: list[str] = []
        handed_out = 0
        handed_back: list[str] = []
        if known_total is not None:
            self._progress.customers_total(known_total)
        log.info("pass_started", run_id=run_id, mode=mode.value, customers=known_total)
        client = self._client
        before = (client.requests, client.retries, client.failed_requests)
        limits = BreakerLimits(
            self._settings.sync_breaker_customers, self._settings.sync_breaker_seconds
        )
        breaker = CircuitBreaker(limits, client.host, now=time.monotonic())
        self.breaker = client.breaker = breaker
        unreachable: str | None = None
        empty = 0

        async def sync_one(assignment: Assignment, fetched: asyncio.Event) -> None:
            nonlocal empty
            try:
                outcome = await self._sync_customer(assignment, feed, run_id, totals, fetched)
            finally:
                fetched.set()
            empty += outcome.empty_first
            totals.add_customer(failed=outcome.error is not None, finished=outcome.ok)
            if outcome.error is not None:
                failures.append(f"customer {assignment.customer.label}: {outcome.error}")
            elif outcome.stopped is not None:
                handed_back.append(outcome.stopped)
            await feed.finished(assignment, outcome)
            self._progress.customer_done(outcome.error is None)

        async def worker(group: asyncio.TaskGroup) -> None:
            # Once a customer's last request is answered, its worker takes the next customer
            # while that last page is written: one customer walking and at most one finishing
            # per worker, so requests in flight stay within SYNC_CONCURRENCY while the group
            # transactions carry more pages (BENCHMARKS.md, design choices).
            nonlocal handed_out
            finishing: asyncio.Task[None] | None = None
            while (assignment := await feed.next()) is not None:
                handed_out += 1
                fetched = asyncio.Event()
                walking = group.create_task(sync_one(assignment, fetched))
                await fetched.wait()
                if finishing is not None:
                    await asyncio.wait({finishing})  # its failure reaches the task group
                finishing = walking

        workers = self._settings.sync_concurrency
        if known_total is not None:
            workers = min(workers, max(1, known_total))
        status, summary = RunStatus.FAILED, None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if membership is not None:
                    await stack.enter_async_context(membership)
                async with asyncio.TaskGroup() as group:
                    for _ in range(workers):
                        group.create_task(worker(group))
        except BaseExceptionGroup as group:
            fatal = _first_of(group, FatalError)
            if fatal is not None:
                summary = str(fatal)
                raise fatal from None
            if _first_of(group, ApiUnreachable) is None or breaker.tripped is None:
                raise
            # The breaker tripped: the other workers were cancelled at once (a page write in
            # flight still completes), and the customers they held are neither ok nor failed.
            unreachable = summary = str(breaker.tripped)
        except asyncio.CancelledError:
            status, summary = RunStatus.INTERRUPTED, "interrupted before the pass finished"
            raise
        else:
            status = totals.finished_status
            summary = "; ".join(failures[:5]) + (" …" if len(failures) > 5 else "") or None
            if handed_back:
                # Customers let go unfinished (a shutdown, a lost lease): the pass did not end.
                status = RunStatus.INTERRUPTED
                note = f"{len(handed_back)} customers handed back unfinished ({handed_back[0]})"
                summary = f"{note}; {summary}" if summary else note
        finally:
            client.breaker = self.breaker = None
            totals.requests = client.requests - before[0]
            totals.retries = client.retries - before[1]
            totals.errors = client.failed_requests - before[2]
            total = known_total if known_total is not None else handed_out
            await self._finish(run_id, status, totals, summary, total)
        elapsed = asyncio.get_running_loop().time() - started
        report = RunReport(
            run_id,
            mode,
            status,
            known_total or handed_out,
            totals,
            elapsed,
            failures,
            unreachable=unreachable,
            customers_empty=empty,
        )
        log.info("pass_finished", run_id=run_id, status=status, **asdict(totals))
        return report

    async def _finish(
        self,
        run_id: int,
        status: RunStatus,
        totals: RunTotals,
        summary: str | None,
        customers: int,
    ) -> None:
        end = (run_id, status, asdict(totals) | {"customers_total": customers}, summary)
        try:
            await complete_even_if_cancelled(self._store.runs.finish(*end))
        except DATABASE_ERRORS as exc:
            self._unrecorded.append(end)
            log.error("run_not_recorded", run_id=run_id, error=describe_db_error(exc))

    async def _sync_customer(
        self,
        assignment: Assignment,
        feed: CustomerFeed,
        run_id: int,
        totals: RunTotals,
        fetched: asyncio.Event,
    ) -> CustomerOutcome:
        """One customer's pass; what it came to is in the outcome, never raised (but fatal).
        ``fetched`` is set once no request for this customer is left to send."""
        customer = assignment.customer
        outcome = CustomerOutcome()
        bound = log.bind(customer=customer.label, run_id=run_id)
        reason: str | None = None
        try:
            outcome.stopped = await self._walk(
                assignment, feed, run_id, (outcome, totals), bound, fetched
            )
            self._db_failures_in_a_row = 0
        except LeaseLost as exc:
            outcome.stopped = str(exc)
        except ApiUnreachable:
            raise  # the whole pass stops; this customer is not at fault
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
            # because nothing is written outside the page transaction (store.pages.save).
            bound.exception("internal_error")
            reason = f"internal error ({type(exc).__name__}: {exc})"
        if outcome.stopped is not None:
            bound.info("customer_handed_back", reason=outcome.stopped)
        if reason is None:
            return outcome
        outcome.error = reason
        bound.warning("customer_failed", reason=reason)
        try:
            await self._store.pages.record_failure(customer.ref, reason)
        except DATABASE_ERRORS as exc:
            bound.error("failure_not_recorded", error=describe_db_error(exc))
        return outcome

    async def _walk(
        self,
        assignment: Assignment,
        feed: CustomerFeed,
        run_id: int,
        tallies: tuple[CustomerOutcome, RunTotals],
        bound: structlog.typing.FilteringBoundLogger,
        fetched: asyncio.Event,
    ) -> str | None:
        """Page through one customer. Returns None when complete, else why it stopped early;
        raises for failures. Sets ``fetched`` when the last page's write starts and no
        request follows it."""
        customer, mode = assignment.customer, assignment.mode
        page_size = self._settings.sync_page_size
        lookback = self._settings.lookback_ids
        stored, ever_synced = await retry_db(
            lambda: self._store.pages.load_cursor_and_history(customer.ref), bound
        )
        first_pass = not ever_synced and not stored.in_pass
        # A resumed pass walks on from a top that went stale while it was interrupted; when it
        # ends, one fresh look from the top (usually a single request) brings the customer up
        # to date as of this pass.
        top_up = stored.in_pass
        cursor = begin_pass(stored, mode, lookback, utc_now())
        fence = feed.fence(customer)
        # The deletion guard compares a walk from the top with the first page's totalCount; a
        # resumed walk saw its upper pages in another process, so only the share rule judges it.
        first_total: int | None = None
        items_seen = 0
        whole_walk = not stored.in_pass
        in_flight = WriteBehind()
        try:
            while True:
                halt = feed.may_continue(customer)
                if halt is not None:
                    return halt
                try:
                    # The request must not outlive the lease: past it, another worker may start.
                    async with asyncio.timeout_at(feed.deadline(customer)):
                        page = await self._client.list_files(
                            customer, next_last_id(cursor), page_size
                        )
                except TimeoutError:
                    return "its lease ran out during a request"
                records, rejected = split_items(page.items, strings_checked=page.strings_checked)
                if next_last_id(cursor) is None:
                    first_total = page.total_count
                items_seen += len(page.items)
                outcome = step(
                    cursor,
                    [r.id for r in records],
                    len(page.items),
                    requested_size=page_size,
                    reported_size=page.reported_page_size,
                    stop_on_short_page=self._settings.sync_stop_on_short_page,
                )
                # The page before is written first: the stored cursor never runs ahead of the
                # stored rows.
                await in_flight.settle()
                # Once a page is fetched its transaction commits or rolls back whole, even if a
                # shutdown cancels this worker meanwhile. Writing it again is safe: rows and
                # cursor are upserts in the same transaction, so a commit whose answer was lost
                # repeats.
                write = partial(
                    self._store.pages.save,
                    customer,
                    records,
                    rejected,
                    outcome.cursor,
                    run_id=run_id,
                    completed=outcome.verdict is PageVerdict.COMPLETE,
                    vanished=outcome.vanished,
                    fence=fence,
                    guard=DeletionGuard(
                        self._settings.sync_max_delete_share,
                        walk_ended_early(first_total, items_seen) if whole_walk else None,
                        self._allow_mass_delete,
                        self._settings.sync_max_delete_min_files,
                    ),
                )
                in_flight.start(
                    retry_db(partial(whole, write), bound),
                    partial(self._page_written, tallies, len(records), rejected, bound),
                )
                if outcome.verdict is PageVerdict.CONTINUE:
                    # The next page is fetched while this one is written.
                    cursor = outcome.cursor
                    continue
                if not top_up:
                    fetched.set()
                counts = await in_flight.settle()
                if outcome.verdict is PageVerdict.STUCK:
                    raise _CustomerStuck(outcome.detail)
                assert counts is not None
                bound.debug("customer_done", detail=outcome.detail, deleted=counts.deleted)
                if top_up:
                    top_up = False
                    cursor = begin_pass(outcome.cursor, PassMode.INCREMENTAL, lookback, utc_now())
                    continue
                seen = tallies[0].counts
                tallies[0].empty_first = first_pass and not (
                    seen.inserted or seen.updated or seen.unchanged or seen.rejected
                )
                return None
        finally:
            # A walk that ends early (a halt, a failed request, a shutdown) still sees the
            # page it fetched last written, or its error raised.
            await in_flight.settle()

    def _page_written(
        self,
        tallies: tuple[CustomerOutcome, RunTotals],
        record_count: int,
        rejected: Sequence[RejectedRecord],
        bound: structlog.typing.FilteringBoundLogger,
        counts: PageCounts,
    ) -> None:
        tallies[0].counts.add(counts)
        tallies[1].add_page(counts)
        self._progress.page_done(record_count)
        for item in rejected:
            bound.warning("record_rejected", reason=item.reason, record_id=item.record_id)


class _CustomerStuck(Exception):
    """The pager cannot go on with this customer (a cursor that does not advance, …)."""


E = TypeVar("E", bound=BaseException)


def _first_of(group: BaseExceptionGroup, kind: type[E]) -> E | None:
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_of(exc, kind)
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
        if isinstance(parsed, FileRecord):
            records.append(parsed)
        else:
            rejected.append(parsed)
    return records, rejected
