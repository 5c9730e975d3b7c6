"""``tanma-sync daemon``: keeps every customer fresh, for months, alone or beside other daemons.

APScheduler fires three jobs: a *sweep* on ``SYNC_SCHEDULE`` (sync the customers that are due),
a *full reconcile* on ``SYNC_FULL_SCHEDULE`` (mark every customer for a ``--full`` pass, then
sweep) and a *heartbeat* (renew this worker's leases, count the live workers and take this
worker's share of the rate limit). Sweeps run one at a time; a sweep is a pass of the engine over
a ``LeaseFeed``, which claims due customers from the fleet store a few at a time.

Shutdown (SIGTERM or SIGINT): stop claiming; workers stop at their next page boundary; after
part of ``SYNC_SHUTDOWN_TIMEOUT`` whatever is still running is cancelled (a page transaction in
flight still commits or rolls back whole); leases are handed back and the process exits 0. A
second signal exits at once: the database rolls back whatever transaction was open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from sync.client import TanmaClient
from sync.db import DATABASE_ERRORS, describe_db_error
from sync.engine import Assignment, CustomerOutcome, RunReport, SyncEngine
from sync.errors import ConfigError, CredentialsRejected, FatalError
from sync.fleet import Claim, FleetStore
from sync.models import utc_now
from sync.observe import DaemonMetrics, Health, HealthFacts, StatusListener, assess_health
from sync.pager import PassMode
from sync.schedule import (
    PollPolicy,
    lease_renew_every,
    next_due,
    next_interval,
    rate_share,
    retry_due,
)
from sync.service import open_store
from sync.settings import Settings
from sync.store import CustomerKey, Fence, MirrorStore

log = structlog.get_logger("tanma_sync.daemon")

EXIT_FORCED = 130
# Customers claimed per trip to the database: enough to keep every worker busy, few enough
# that a crashed daemon strands little.
_CLAIM_BATCH_PER_WORKER = 2
# Let go of a customer this long before its lease would expire in the database.
_LEASE_SAFETY_S = 5.0
# Part of SYNC_SHUTDOWN_TIMEOUT kept for handing back leases and closing connections.
_CLEANUP_SHARE = 0.25


class _SweepCutShort(Exception):
    """Claiming failed part-way through a sweep (the database): the message says why."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseFeed:
    """Customers for one sweep: claimed from the fleet store as workers ask for them, each held
    by a lease that page transactions renew and check."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        # Only what is due when the sweep starts: a customer polled every few seconds must not
        # keep one sweep going forever.
        self._due_by = utc_now()
        self._queue: list[Claim] = []
        self._claims: dict[int, Claim] = {}
        self._deadlines: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self._exhausted = False
        # Why claiming stopped early (the database failed), for the sweep to report.
        self.database_error: str | None = None

    async def prime(self) -> bool:
        """Claim the first batch; False when nothing is due (the sweep is skipped)."""
        await self._refill()
        return bool(self._queue)

    async def _refill(self) -> None:
        d = self._d
        if self._exhausted or d.stopping:
            return
        claimed_at = d.loop_time()
        batch = d.settings.sync_concurrency * _CLAIM_BATCH_PER_WORKER
        try:
            claims = await d.fleet.claim_due(
                d.worker_id, batch, d.settings.sync_lease_ttl, due_by=self._due_by
            )
        except DATABASE_ERRORS as exc:
            # Raised inside a worker this would end the pass as an internal error; instead the
            # customers already held are finished and the rest wait for the next sweep.
            self._exhausted = True
            self.database_error = describe_db_error(exc)
            return
        if not claims:
            self._exhausted = True
        for claim in claims:
            self._claims[claim.customer.ref] = claim
            self._deadlines[claim.customer.ref] = claimed_at + d.lease_budget
        self._queue.extend(claims)

    async def next(self) -> Assignment | None:
        async with self._lock:
            if not self._queue:
                await self._refill()
            if not self._queue or self._d.stopping:
                return None
            claim = self._queue.pop(0)
        mode = PassMode.FULL if claim.full else PassMode.INCREMENTAL
        return Assignment(claim.customer, mode)

    def held(self) -> list[int]:
        return list(self._claims)

    def renewed(self, at: float) -> None:
        """A heartbeat renewed every lease this worker holds, as of loop time ``at``."""
        for ref in self._claims:
            self._deadlines[ref] = at + self._d.lease_budget

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None:
        d = self._d
        ref = assignment.customer.ref
        claim = self._claims.pop(ref)
        self._deadlines.pop(ref, None)
        d.count_outcome(outcome)
        try:
            if outcome.stopped is not None:
                await d.fleet.release(d.worker_id, [ref])
                return
            now = utc_now()
            if outcome.error is not None:
                await d.fleet.finish_customer(
                    d.worker_id,
                    ref,
                    next_due_at=next_due(d.policy, now, 0.0, claim.last_success_at)
                    if False
                    else retry_due(d.policy, now),
                    poll_interval_s=None,
                    found_new=False,
                    full_done=False,
                )
                return
            found_new = outcome.counts.inserted > 0
            interval = next_interval(d.policy, claim.poll_interval_s, found_new)
            due = next_due(d.policy, now, interval, now, spread=d.rng.uniform(-1.0, 1.0))
            await d.fleet.finish_customer(
                d.worker_id,
                ref,
                next_due_at=due,
                poll_interval_s=interval,
                found_new=found_new,
                full_done=assignment.mode is PassMode.FULL,
            )
        except DATABASE_ERRORS as exc:
            # The lease is handed back with the others when the sweep ends (or runs out by
            # itself); the customer is then due for whoever claims it.
            log.warning(
                "schedule_not_updated",
                customer=assignment.customer.label,
                error=describe_db_error(exc),
            )

    def may_continue(self, customer: CustomerKey) -> str | None:
        if self._d.stopping:
            return "shutting down"
        if self._d.loop_time() >= self._deadlines.get(customer.ref, 0.0):
            return "its lease ran out"
        return None

    def deadline(self, customer: CustomerKey) -> float | None:
        return self._deadlines.get(customer.ref)

    def fence(self, customer: CustomerKey) -> Fence | None:
        d = self._d
        check = d.fleet.lease_fence(d.worker_id, customer.ref, d.settings.sync_lease_ttl)
        deadlines = self._deadlines

        async def renewing_check(conn: Any) -> None:
            at = d.loop_time()
            await check(conn)
            deadlines[customer.ref] = at + d.lease_budget

        return renewing_check


@dataclass
class _State:
    started_at: float = 0.0
    last_ok_pass_at: float | None = None
    last_ok_pass_wall: datetime | None = None
    database_error: str | None = None
    credentials_error: str | None = None
    stalest_label: str | None = None
    stalest_since: datetime | None = None


class Daemon:
    def __init__(
        self,
        settings: Settings,
        store: MirrorStore,
        fleet: FleetStore,
        client: TanmaClient,
        *,
        worker_id: str | None = None,
        burst: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.fleet = fleet
        self.client = client
        self.worker_id = worker_id or settings.sync_worker_id or default_worker_id()
        self.policy: PollPolicy = settings.poll_policy
        self.rng = random.Random()
        self.burst = burst
        ttl = settings.sync_lease_ttl
        self.lease_budget = ttl - min(_LEASE_SAFETY_S, ttl / 10)
        self.engine = SyncEngine(settings, store, client)
        self.metrics = DaemonMetrics(self._client_tallies)
        self.listener: StatusListener | None = None
        self.stopping = False
        self.state = _State()
        self._stop = asyncio.Event()
        self.started = asyncio.Event()  # set once listening and scheduled
        self._signals = 0
        self._sweep_task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()  # "full" and/or "incremental"
        self._feed: LeaseFeed | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self.exit_code = 0

    # -- small helpers ---------------------------------------------------------------------

    @staticmethod
    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    def _client_tallies(self) -> dict[str, Any]:
        c = self.client
        return {
            "outcomes": dict(c.outcomes),
            "retries": c.retries,
            "rate_limit_waits": c.rate_limit_waits,
        }

    def count_outcome(self, outcome: CustomerOutcome) -> None:
        result = "handed_back" if outcome.stopped else "failed" if outcome.error else "synced"
        self.metrics.customers.labels(result).inc()
        counts = outcome.counts
        for action in ("inserted", "updated", "unchanged", "rejected", "deleted"):
            amount = getattr(counts, action)
            if amount:
                self.metrics.records.labels(action).inc(amount)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> int:
        """Until a signal (or, in burst mode, until nothing is due); returns the exit status."""
        loop = asyncio.get_running_loop()
        self.state.started_at = self.loop_time()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._start()
            self.started.set()
            if self.burst:
                await self._sweep(full=False)
            else:
                await self._stop.wait()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
                if self._signals:
                    # The caller still closes the client and the database after this; without
                    # a handler, a second signal then would kill the process by the signal
                    # (status -15) instead of the documented forced exit.
                    signal.signal(sig, _forced_exit)
        return self.exit_code

    def request_stop(self) -> None:
        self.stopping = True
        self._stop.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            _forced_exit(sig)
        log.info(
            "shutting_down",
            signal=sig.name,
            timeout_s=self.settings.sync_shutdown_timeout,
        )
        self.request_stop()
        # A shutdown that hangs (a database that stopped answering) must still end in time.
        asyncio.get_running_loop().call_later(
            self.settings.sync_shutdown_timeout, self._shutdown_overran
        )

    def _shutdown_overran(self) -> None:
        log.error(
            "shutdown_timeout",
            detail="stopped without handing back every lease; they expire by themselves",
            timeout_s=self.settings.sync_shutdown_timeout,
        )
        os._exit(1)

    async def _start(self) -> None:
        s = self.settings
        await self.fleet.register_worker(self.worker_id, socket.gethostname(), os.getpid())
        live = await self._heartbeat()
        log.info(
            "daemon_started",
            worker_id=self.worker_id,
            live_workers=live,
            schedule=s.sync_schedule,
            full_schedule=s.sync_full_schedule,
            max_staleness_s=s.sync_max_staleness,
        )
        address = s.http_listen_address
        if address is not None:
            self.listener = StatusListener(self.health, self.metrics)
            try:
                await self.listener.start(*address)
            except OSError as exc:
                raise ConfigError(
                    f"setting SYNC_HTTP_LISTEN: cannot listen on {s.sync_http_listen} "
                    f"({exc.strerror or exc})"
                ) from None
            log.info("listening", host=address[0], port=self.listener.port)
        if live > 1:
            # The others lower their share on their next heartbeat; spend nothing until then,
            # so the workers together never go above the app's limit.
            wait = lease_renew_every(s.sync_lease_ttl)
            log.info("waiting_for_rate_share", live_workers=live, wait_s=round(wait, 1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
        if self.burst or self.stopping:
            return
        scheduler = AsyncIOScheduler(timezone=s.sweep_cadence.trigger.timezone)
        job_defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        scheduler.add_job(
            self._kick,
            s.sweep_cadence.trigger,
            args=["incremental"],
            id="sweep",
            next_run_time=datetime.now(UTC),
            **job_defaults,
        )
        full = s.full_cadence
        if full is not None:
            scheduler.add_job(self._kick, full.trigger, args=["full"], id="full", **job_defaults)
        scheduler.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=lease_renew_every(s.sync_lease_ttl)),
            id="heartbeat",
            **job_defaults,
        )
        scheduler.start()
        self._scheduler = scheduler

    async def _shutdown(self) -> None:
        self.stopping = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        budget = self.settings.sync_shutdown_timeout
        task = self._sweep_task
        if task is not None and not task.done():
            # Workers stop at their next page boundary; past the grace period they are
            # cancelled, and the page transaction in flight still completes.
            _, pending = await asyncio.wait({task}, timeout=budget * (1 - 2 * _CLEANUP_SHARE))
            if pending:
                log.warning("cancelling_workers", detail="the pass did not reach a page boundary")
                task.cancel()
                await asyncio.wait({task}, timeout=budget * _CLEANUP_SHARE)
        try:
            await asyncio.wait_for(
                self.fleet.deregister_worker(self.worker_id), budget * _CLEANUP_SHARE
            )
        except TimeoutError:
            log.warning("leases_not_released", error="timed out")
        except DATABASE_ERRORS as exc:
            log.warning("leases_not_released", error=describe_db_error(exc))
        if self.listener is not None:
            await self.listener.stop()
        log.info("daemon_stopped", worker_id=self.worker_id)

    # -- jobs ------------------------------------------------------------------------------

    async def _kick(self, kind: str) -> None:
        """A job fired: start a sweep, or remember to run one when the current one ends."""
        self._pending.add(kind)
        if self._sweep_task is None or self._sweep_task.done():
            self._sweep_task = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while self._pending and not self.stopping:
            full = "full" in self._pending
            self._pending.clear()
            await self._sweep(full=full)

    async def _sweep(self, *, full: bool) -> None:
        started = self.loop_time()
        try:
            await self.fleet.ensure_schedule_rows()
            if full:
                full_cadence = self.settings.full_cadence
                gap = full_cadence.longest_gap_s / 2 if full_cadence else 0.0
                marked = await self.fleet.request_full(gap)
                log.info("full_reconcile_requested", customers=marked)
            feed = LeaseFeed(self)
            self._feed = feed
            if await feed.prime():
                mode = PassMode.FULL if full else PassMode.INCREMENTAL
                report = await self.engine.run_pass(mode, feed, worker_id=self.worker_id)
                self._pass_done(report, started)
            if feed.database_error is not None:
                raise _SweepCutShort(feed.database_error)
            self.state.last_ok_pass_at = self.loop_time()
            self.state.last_ok_pass_wall = utc_now()
            self.metrics.last_ok_pass.set(self.state.last_ok_pass_wall.timestamp())
            self.state.credentials_error = None
            self.state.database_error = None
        except CredentialsRejected as exc:
            self.state.credentials_error = str(exc)
            self.metrics.passes.labels("failed").inc()
            log.error("pass_failed", reason=str(exc))
        except FatalError as exc:
            self.metrics.passes.labels("failed").inc()
            log.error("pass_failed", reason=str(exc))
        except _SweepCutShort as exc:
            # Any pass that ran is recorded; the sweep is no success, since due customers were
            # left unclaimed (the next sweep takes them).
            self.state.database_error = str(exc)
            log.error("sweep_incomplete", reason=f"database: {exc}")
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            self.metrics.passes.labels("failed").inc()
            log.error("pass_failed", reason=f"database: {self.state.database_error}")
        except Exception:
            # A bug costs this sweep, not the daemon; the next sweep starts afresh.
            self.metrics.passes.labels("failed").inc()
            log.exception("pass_failed", reason="internal error")
        finally:
            self._feed = None
            await self._hand_back_leftovers()
            await self._refresh_stalest()

    def _pass_done(self, report: RunReport, started: float) -> None:
        self.metrics.passes.labels(report.status).inc()
        self.metrics.pass_duration.observe(self.loop_time() - started)
        if self.burst and report.status != "ok":
            self.exit_code = 3

    async def _hand_back_leftovers(self) -> None:
        # Between sweeps this worker holds nothing; a sweep that ended early (fatal error,
        # cancelled) may have claimed customers it never started.
        try:
            released = await self.fleet.release_all(self.worker_id)
        except DATABASE_ERRORS as exc:
            # The heartbeat keeps these leases alive, but the next sweep's end hands them back.
            log.warning("leases_not_released", error=describe_db_error(exc))
            return
        if released:
            log.info("leases_handed_back", customers=released)

    async def _heartbeat(self) -> int:
        s = self.settings
        at = self.loop_time()
        try:
            live = await self.fleet.heartbeat(self.worker_id, s.sync_lease_ttl)
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            log.warning("heartbeat_failed", error=self.state.database_error)
            return 0
        self.state.database_error = None
        if self._feed is not None:
            self._feed.renewed(at)
        share = rate_share(s.sync_rate_limit, live)
        self.client.set_rate_limit(share)
        self.metrics.live_workers.set(live)
        self.metrics.rate_share.set(share)
        await self._refresh_stalest()
        return live

    async def _refresh_stalest(self) -> None:
        try:
            stalest = await self.fleet.stalest()
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            return
        if stalest is not None:
            self.state.stalest_label, self.state.stalest_since = stalest.label, stalest.since

    # -- health ----------------------------------------------------------------------------

    async def health(self) -> Health:
        database_error = self.state.database_error
        try:
            await asyncio.wait_for(self.fleet.ping(), 5.0)
            database_error = None
        except TimeoutError:
            database_error = "no answer in 5s"
        except DATABASE_ERRORS as exc:
            database_error = describe_db_error(exc)
        age = None
        if self.state.stalest_since is not None:
            age = max(0.0, (utc_now() - self.state.stalest_since).total_seconds())
            self.metrics.stalest_age.set(age)
        health = assess_health(
            HealthFacts(
                now=self.loop_time(),
                started_at=self.state.started_at,
                max_staleness_s=self.settings.sync_max_staleness,
                database_error=database_error,
                credentials_error=self.state.credentials_error,
                last_ok_pass_at=self.state.last_ok_pass_at,
                stalest_label=self.state.stalest_label,
                stalest_age_s=age,
            )
        )
        self.metrics.healthy.set(1 if health.ok else 0)
        return health


def _forced_exit(sig: int, _frame: object = None) -> None:
    """A second signal: exit at once. Whatever transaction is open is rolled back by the
    database, and the leases expire."""
    log.warning("forced_exit", signal=signal.Signals(sig).name)
    os._exit(EXIT_FORCED)


async def serve(settings: Settings, *, migrate: bool, burst: bool = False) -> int:
    """Open everything the daemon needs, run it, close it all; returns the exit status."""
    settings.require_credentials()
    with single_daemon_lock(settings.sync_database_url):
        async with open_store(settings, migrate=migrate) as store, TanmaClient(settings) as client:
            daemon = Daemon(settings, store, FleetStore(store.engine), client, burst=burst)
            return await daemon.run()


@contextlib.contextmanager
def single_daemon_lock(database_url: str) -> Iterator[None]:
    """On SQLite, refuse a second daemon on the same file: SQLite has one writer, and the
    lease machinery that lets daemons share work needs PostgreSQL. The lock is the kernel's
    (flock), so a daemon killed with SIGKILL does not leave it behind."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    path = Path(url.database).resolve()
    lock_path = path.with_name(path.name + ".daemon.lock")
    handle: IO[str] = open(lock_path, "a+")  # noqa: SIM115 - held for the daemon's life
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"another tanma-sync daemon ({holder}) is already running on {path}; SQLite "
                "allows one writer, so run one daemon per SQLite file (several daemons need "
                "PostgreSQL)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()
