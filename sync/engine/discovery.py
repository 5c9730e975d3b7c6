"""A customer discovery: the pure walk (sync/domain/discovery.py) driven over the search
endpoint, each page handed to the store with the walk's state. This module decides nothing
about windows or SQL; it wires the walk, the client and the store together and keeps the tally.

One discovery runs at a time, under the lease in ``discovery_state`` (on PostgreSQL several
daemons may share a database; a CLI discovery takes the same lease). A walk left unfinished
(killed, failed, interrupted) is resumed by the next discovery: an incremental one resumes a
full walk left under way, a full one replaces an unfinished incremental walk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from sync.api.client import TanmaClient
from sync.api.responses import SearchPage
from sync.config.settings import Settings
from sync.domain.discovered import DiscoveredCustomer, RejectedCustomer, parse_customer_item
from sync.domain.discovery import DiscoveryWalk, Gap, SearchQuery, Step, Window
from sync.domain.errors import CustomerError, FatalError, LeaseLost, TransientError
from sync.domain.tally import RunStatus
from sync.engine.db_retry import complete_even_if_cancelled, retry_db, whole
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.discovery import DiscoveryCounts
from sync.mirror.models import utc_now
from sync.mirror.owners import current_owner
from sync.mirror.store import MirrorStore

log = structlog.get_logger("tanma_sync.discovery")

MODE_INCREMENTAL = "discover"
MODE_FULL = "discover_full"
# The walk's newest window reaches this far past our clock: the server's may be ahead.
_FUTURE_SLACK = timedelta(hours=1)


class DiscoveryBusy(FatalError):
    """Another process holds the discovery lease."""


@dataclass
class DiscoveryReport:
    run_id: int
    full: bool
    status: RunStatus
    found: int
    counts: DiscoveryCounts
    requests: int
    retries: int
    windows: int
    windows_split: int
    rewalks: int
    gaps: list[Gap]
    seconds: float
    resumed: bool
    failure: str | None = None
    conflicts: list[str] = field(default_factory=list)
    root: Window | None = None  # the createTime range the walk covered


class DiscoveryEngine:
    def __init__(
        self,
        settings: Settings,
        store: MirrorStore,
        client: TanmaClient,
        *,
        worker_id: str | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._owner = current_owner()
        self._worker = worker_id or f"{self._owner.hostname}:{self._owner.pid}"
        self._daemon_worker = worker_id
        self._stopping = stopping

    async def discover(self, *, full: bool) -> DiscoveryReport:
        """One discovery to its end (or until it fails or is stopped); the report says how it
        went. DiscoveryBusy when another process runs one; FatalError stops it at once."""
        s = self._settings
        ttl = s.sync_lease_ttl
        store = self._store.discovery
        started = asyncio.get_running_loop().time()
        abandoned = await self._store.runs.close_abandoned(ttl)
        if abandoned:
            log.warning("runs_abandoned", run_ids=sorted(abandoned))
        holder = await store.claim(self._worker, self._owner, ttl)
        if holder is not None:
            raise DiscoveryBusy(
                f"a discovery is already running ({holder.owner}); try again when it ends, "
                f"or after its lease lapses (SYNC_LEASE_TTL={ttl:g}s)"
            )
        try:
            return await self._walk(full, started)
        finally:
            try:
                await complete_even_if_cancelled(store.release(self._worker))
            except DATABASE_ERRORS as exc:
                log.warning("discovery_lease_not_released", error=describe_db_error(exc))

    async def _walk(self, full: bool, started: float) -> DiscoveryReport:
        s = self._settings
        ttl = s.sync_lease_ttl
        store = self._store.discovery
        client = self._client
        before = (client.requests, client.retries, client.failed_requests)
        mode = MODE_FULL if full else MODE_INCREMENTAL
        run_id = await self._store.runs.start(mode, 0, worker_id=self._daemon_worker)
        bound = log.bind(run_id=run_id, mode=mode)
        in_progress = await store.walk_in_progress()
        resumed = in_progress is not None and (in_progress.walk.full or not full)
        if in_progress is not None and resumed:
            walk, walk_started = in_progress.walk, in_progress.started_at
            walk_started = await retry_db(
                lambda: store.begin_walk(self._worker, ttl, walk, run_id, walk_started), bound
            )
            bound.info("discovery_resumed", full=walk.full, windows_left=len(walk.pending))
        else:
            walk = DiscoveryWalk.plan(
                await self._root_window(full),
                full=full,
                page_size=s.sync_discovery_page_size,
                max_results=s.tanma_search_max_results,
                max_rewalks=s.sync_discovery_max_rewalks,
            )
            walk_started = await retry_db(
                lambda: store.begin_walk(self._worker, ttl, walk, run_id, None), bound
            )
            bound.info("discovery_started", full=full, window=str(walk.root))
        counts = DiscoveryCounts()
        # Windows walked again read customers again: what the run found is counted once.
        found: set[str] = set()
        set_aside: set[str] = set()
        status, failure = RunStatus.FAILED, None
        # The walk's next request is known once an answer is recorded, before its page is
        # written: it is sent while the pages' transaction runs, so the wait on the API and
        # the database's work overlap. The requests are the ones the walk asks for, in order.
        ahead = _Ahead(client)
        batch = _PageBatch(asyncio.get_running_loop().time)

        async def write_batch() -> None:
            # The pages read since the last write, with the walk's state after the last of
            # them, in one transaction.
            if batch.empty:
                return
            write = partial(
                store.save_pages,
                self._worker,
                ttl,
                walk,
                run_id,
                batch.customers,
                batch.rejected,
                follow_hint=s.sync_discovery_follow_hint,
            )
            counts.add(await retry_db(partial(whole, write), bound))
            found.update(c.identity for c in batch.customers)
            set_aside.update(r.identity for r in batch.rejected)
            batch.clear()

        try:
            while (query := walk.next_query()) is not None:
                if self._stopping():
                    await write_batch()
                    status, failure = RunStatus.INTERRUPTED, "stopped before the walk's end"
                    break
                try:
                    page = await ahead.take(query)
                except (TransientError, CustomerError):
                    # The pages read before the failure are kept; the next discovery resumes
                    # the walk after them.
                    await write_batch()
                    raise
                customers: list[DiscoveredCustomer] = []
                rejected: list[RejectedCustomer] = []
                for item in page.items:
                    parsed = parse_customer_item(item, strings_checked=page.strings_checked)
                    if isinstance(parsed, DiscoveredCustomer):
                        customers.append(parsed)
                    else:
                        rejected.append(parsed)
                identities = [c.identity for c in customers] + [r.identity for r in rejected]
                step = walk.record(query, page.total_count, identities, page.reported_page_size)
                if step in (Step.SPLIT, Step.REWALK):
                    bound.info(
                        f"discovery_{step.value}",
                        window=str(query.window),
                        total_count=page.total_count,
                    )
                batch.add(customers, rejected)
                upcoming = walk.next_query()
                if upcoming is not None and not self._stopping():
                    ahead.send(upcoming)
                if upcoming is None or batch.due():
                    await write_batch()
            else:
                finish = partial(
                    store.finish_walk,
                    self._worker,
                    ttl,
                    walk,
                    run_id,
                    walk_started,
                    mark_gone=walk.full,
                )
                counts.gone = await retry_db(partial(whole, finish), bound)
                incomplete = walk.gaps or counts.rejected or counts.conflicts
                status = RunStatus.PARTIAL if incomplete else RunStatus.OK
        except LeaseLost as exc:
            status, failure = RunStatus.INTERRUPTED, str(exc)
        except (TransientError, CustomerError) as exc:
            failure = f"gave up: {exc}; the next discovery resumes the walk"
        except DATABASE_ERRORS as exc:
            failure = f"database: {describe_db_error(exc)}; the next discovery resumes the walk"
        except asyncio.CancelledError:
            status, failure = RunStatus.INTERRUPTED, "interrupted before the walk's end"
            raise
        except FatalError as exc:
            failure = str(exc)
            raise
        finally:
            ahead.drop()
            counts.rejected = len(set_aside)
            counts.unchanged = max(0, len(found) - counts.new - counts.updated)
            requests = client.requests - before[0]
            retries = client.retries - before[1]
            summary = failure or "; ".join(
                [g.describe() for g in walk.gaps[:3]]
                + [f"rejected: {counts.rejected} items"] * bool(counts.rejected)
                + counts.conflicts[:3]
            )
            totals = {
                "customers_total": len(found),
                "records_inserted": counts.new,
                "records_updated": counts.updated,
                "records_unchanged": counts.unchanged,
                "records_rejected": counts.rejected + len(counts.conflicts),
                "records_deleted": counts.gone,
                "requests": requests,
                "retries": retries,
                "errors": client.failed_requests - before[2],
            }
            await self._record_end(run_id, status, totals, summary or None, walk, counts, found)
        report = DiscoveryReport(
            run_id=run_id,
            full=walk.full,
            status=status,
            found=len(found),
            counts=counts,
            requests=requests,
            retries=retries,
            windows=walk.windows_done,
            windows_split=walk.windows_split,
            rewalks=walk.rewalks,
            gaps=list(walk.gaps),
            seconds=asyncio.get_running_loop().time() - started,
            resumed=resumed,
            failure=failure,
            conflicts=list(counts.conflicts),
            root=walk.root,
        )
        bound.info(
            "discovery_finished",
            status=status.value,
            found=len(found),
            new=counts.new,
            updated=counts.updated,
            gone=counts.gone,
            requests=requests,
            gaps=len(walk.gaps),
        )
        return report

    async def _record_end(
        self,
        run_id: int,
        status: RunStatus,
        totals: dict[str, int],
        summary: str | None,
        walk: DiscoveryWalk,
        counts: DiscoveryCounts,
        found: set[str],
    ) -> None:
        try:
            await complete_even_if_cancelled(
                self._store.runs.finish(run_id, status, totals, summary)
            )
            await complete_even_if_cancelled(
                self._store.discovery.record_run(run_id, walk, counts, len(found))
            )
        except DATABASE_ERRORS as exc:
            log.error("run_not_recorded", run_id=run_id, error=describe_db_error(exc))

    async def _root_window(self, full: bool) -> Window:
        s = self._settings
        since = s.discovery_since
        now = utc_now()
        end = now + _FUTURE_SLACK
        start = since
        if not full:
            newest = await self._store.discovery.newest_create_time()
            if newest is not None:
                # A create time in the future (bad upstream data) must not push the window
                # past the customers created from now on.
                newest = min(newest, now)
                start = max(since, newest - timedelta(seconds=s.sync_discovery_lookback))
        return Window(_seconds(start), max(_seconds(start), _seconds(end)))


# How many customers, or how long a wait, one transaction's pages may gather. A transaction
# per page cost more than the page's own rows (the lease check, the walk's state rewritten
# whole, a commit rewriting the same index pages); a crash loses at most this much of the walk,
# read again on resume; and the bound on rows matches a sync's group commit (mirror/pages.py),
# so a SQLite write holds a daemon's loop no longer than that does.
_BATCH_CUSTOMERS = 2_000
_BATCH_SECONDS = 1.0


class _PageBatch:
    """The pages read since the walk's state was last written."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None
        self.customers: list[DiscoveredCustomer] = []
        self.rejected: list[RejectedCustomer] = []

    @property
    def empty(self) -> bool:
        return self._since is None

    def add(self, customers: list[DiscoveredCustomer], rejected: list[RejectedCustomer]) -> None:
        if self._since is None:
            self._since = self._clock()
        self.customers.extend(customers)
        self.rejected.extend(rejected)

    def due(self) -> bool:
        """Whether the pages should be written now."""
        if self._since is None:
            return False
        size = len(self.customers) + len(self.rejected)
        return size >= _BATCH_CUSTOMERS or self._clock() - self._since >= _BATCH_SECONDS

    def clear(self) -> None:
        self._since = None
        self.customers = []
        self.rejected = []


class _Ahead:
    """At most one search request sent before the walk reads its answer."""

    def __init__(self, client: TanmaClient) -> None:
        self._client = client
        self._query: SearchQuery | None = None
        self._task: asyncio.Task[SearchPage] | None = None

    def send(self, query: SearchQuery) -> None:
        self._query = query
        self._task = asyncio.ensure_future(self._client.search_customers(query))

    async def take(self, query: SearchQuery) -> SearchPage:
        """The answer to ``query``: the one sent ahead if it was this query, else asked now."""
        task, sent = self._task, self._query
        self._task = self._query = None
        if task is not None and sent == query:
            return await task
        if task is not None:
            _abandon(task)
        return await self._client.search_customers(query)

    def drop(self) -> None:
        """Cancel a request sent ahead that the walk will not read (it stopped or failed)."""
        task = self._task
        self._task = self._query = None
        if task is not None:
            _abandon(task)


def _abandon(task: asyncio.Task[SearchPage]) -> None:
    task.cancel()
    # Not awaited (this may run while the walk itself is being cancelled); its outcome, a
    # failure included, is read when it ends so that asyncio does not report it as lost.
    task.add_done_callback(_read_outcome)


def _read_outcome(task: asyncio.Task[SearchPage]) -> None:
    if not task.cancelled():
        task.exception()


def _seconds(instant: datetime) -> int:
    return int(instant.astimezone(UTC).timestamp())
