"""What the daemon's jobs do: a *sweep* syncs the customers that are due (a pass of the engine
over a ``LeaseFeed``), a *heartbeat* renews this worker's leases and takes its share of the rate
limit, and both keep the facts that health is judged on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.daemon.health import (
    Health,
    HealthFacts,
    LivenessFacts,
    assess_liveness,
    assess_readiness,
)
from sync.daemon.lease_feed import LeaseFeed, lease_terms
from sync.daemon.metrics import DaemonMetrics
from sync.daemon.schedule import DaemonSchedule, lease_renew_every, outage_backoff, rate_share
from sync.domain.chinatime import format_china_time
from sync.domain.errors import CredentialsRejected, FatalError
from sync.domain.pager import PassMode
from sync.domain.tally import RECORD_ACTIONS, RunStatus
from sync.engine.feeds import CustomerOutcome
from sync.engine.passes import RunReport, SyncEngine
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.fleet import FleetStore
from sync.mirror.models import utc_now
from sync.mirror.store import MirrorStore

log = structlog.get_logger("tanma_sync.daemon")


class _SweepCutShort(Exception):
    """Claiming failed part-way through a sweep (the database): the message says why."""


@dataclass
class DaemonState:
    """What health is judged on, as the jobs last saw it. Times: the loop's monotonic clock."""

    started_at: float = 0.0
    last_ok_pass_at: float | None = None
    database_error: str | None = None
    credentials_error: str | None = None
    stalest_label: str | None = None
    stalest_since: datetime | None = None
    # The circuit breaker's verdict on the last sweep that sent requests, or None.
    api_error: str | None = None
    last_tick_at: float = 0.0  # the heartbeat job last ran (whatever the database said)
    last_renewed_at: float | None = None  # the heartbeat last renewed the leases
    # Sweeps in a row the breaker stopped, and until when (loop time) sweeps are postponed.
    outages: int = 0
    postponed_until: float | None = None


@dataclass(frozen=True)
class SweepSummary:
    """One sweep in a line: what was due, what came of it, and what is next."""

    due: int
    synced: int
    failed: int
    handed_back: int
    backlog: int | None
    next_due_at: datetime | None
    stopped_by: str | None

    def line(self) -> str:
        backlog = "unknown" if self.backlog is None else str(self.backlog)
        text = (
            f"sweep: {self.due} customers due, {self.synced} synced, {self.failed} failed, "
            f"{self.handed_back} handed back; backlog {backlog}; next due "
            f"{format_china_time(self.next_due_at) or 'none'} (UTC+8)"
        )
        return f"{text}; stopped: {self.stopped_by}" if self.stopped_by else text


class Sweeper:
    def __init__(
        self,
        settings: Settings,
        schedule: DaemonSchedule,
        store: MirrorStore,
        fleet: FleetStore,
        client: TanmaClient,
        *,
        worker_id: str,
        stopping: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._schedule = schedule
        self._fleet = fleet
        self._client = client
        self._stopping = stopping
        self._engine = SyncEngine(settings, store, client)
        self._rng = random.Random()
        self.terms = lease_terms(worker_id, settings.sync_lease_ttl, settings.sync_concurrency)
        self.metrics = DaemonMetrics(self._client_tallies)
        self.state = DaemonState()
        self.last_report: RunReport | None = None
        self.last_summary: SweepSummary | None = None
        # Why the last sweep failed before or instead of finishing its pass, or None.
        self.last_failure: str | None = None
        self._feed: LeaseFeed | None = None

    @staticmethod
    def clock() -> float:
        return asyncio.get_running_loop().time()

    def _client_tallies(self) -> dict[str, Any]:
        c = self._client
        return {
            "outcomes": dict(c.outcomes),
            "retries": c.retries,
            "rate_limit_waits": c.rate_limit_waits,
        }

    def count_outcome(self, outcome: CustomerOutcome) -> None:
        result = "handed_back" if outcome.stopped else "failed" if outcome.error else "synced"
        self.metrics.customers.labels(result).inc()
        for action in RECORD_ACTIONS:
            amount = getattr(outcome.counts, action)
            if amount:
                self.metrics.records.labels(action).inc(amount)

    # -- the sweep -------------------------------------------------------------------------

    def postponed_for(self) -> float | None:
        """Seconds until sweeps resume after an API outage, or None when they may run now."""
        until = self.state.postponed_until
        if until is None:
            return None
        left = until - self.clock()
        return left if left > 0 else None

    async def sweep(self, *, full: bool) -> RunReport | None:
        """Sync what is due (every customer first, for a full reconcile); returns the pass's
        report, or None when no pass ran (nothing due, or a failure before it began)."""
        started = self.clock()
        self.last_report = None
        self.last_failure = None
        self.last_summary = None
        try:
            await self._fleet.ensure_schedule_rows()
            if full:
                full_cadence = self._schedule.full
                gap = full_cadence.longest_gap_s / 2 if full_cadence else 0.0
                marked = await self._fleet.request_full(gap)
                log.info("full_reconcile_requested", customers=marked)
            feed = LeaseFeed(
                self._fleet,
                self.terms,
                self._schedule.policy,
                stopping=self._stopping,
                on_outcome=self.count_outcome,
                rng=self._rng,
                clock=self.clock,
            )
            self._feed = feed
            ran_to_its_end = True
            if await feed.prime():
                mode = PassMode.FULL if full else PassMode.INCREMENTAL
                report = await self._engine.run_pass(mode, feed, worker_id=self.terms.worker_id)
                self.last_report = report
                self.metrics.passes.labels(report.status.value).inc()
                self.metrics.pass_duration.observe(self.clock() - started)
                ran_to_its_end = report.status.ran_to_its_end
                self._judge_api(report)
            if feed.database_error is not None:
                raise _SweepCutShort(feed.database_error)
            if ran_to_its_end:
                self.state.last_ok_pass_at = self.clock()
                self.metrics.last_ok_pass.set(utc_now().timestamp())
            self.state.credentials_error = None
            self.state.database_error = None
        except CredentialsRejected as exc:
            self.state.credentials_error = str(exc)
            self._pass_failed(str(exc))
        except FatalError as exc:
            self._pass_failed(str(exc))
        except _SweepCutShort as exc:
            # Any pass that ran is recorded; the sweep is no success, since due customers were
            # left unclaimed (the next sweep takes them).
            self.state.database_error = str(exc)
            self.last_failure = f"database: {exc}"
            log.error("sweep_incomplete", reason=self.last_failure)
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            self._pass_failed(f"database: {self.state.database_error}")
        except Exception:
            # A bug costs this sweep, not the daemon; the next sweep starts afresh.
            self.metrics.passes.labels(RunStatus.FAILED.value).inc()
            self.last_failure = "internal error"
            log.exception("pass_failed", reason=self.last_failure)
        finally:
            self._feed = None
            await self.hand_back_leftovers()
            await self.refresh_stalest()
            await self._summarise()
        return self.last_report

    def _judge_api(self, report: RunReport) -> None:
        """After a pass: an outage postpones the next sweeps, growing; a pass that got through
        ends the outage."""
        state = self.state
        if report.unreachable is None:
            if state.outages:
                log.info("api_reachable_again", after_outages=state.outages)
            state.api_error, state.outages, state.postponed_until = None, 0, None
            return
        state.api_error = report.unreachable
        state.outages += 1
        delay = outage_backoff(state.outages, self._settings.sync_outage_backoff_max)
        state.postponed_until = self.clock() + delay
        self.last_failure = report.unreachable
        log.error(
            "sweep_backing_off",
            reason=report.unreachable,
            outages=state.outages,
            retry_in_s=round(delay, 1),
        )

    async def _summarise(self) -> None:
        report = self.last_report
        totals = report.totals if report is not None else None
        try:
            outlook = await self._fleet.outlook(utc_now())
            backlog, next_due = outlook.backlog, outlook.next_due_at
        except DATABASE_ERRORS:
            backlog, next_due = None, None
        summary = SweepSummary(
            due=report.customers if report is not None else 0,
            synced=totals.customers_ok if totals is not None else 0,
            failed=totals.customers_failed if totals is not None else 0,
            handed_back=(
                report.customers - totals.customers_ok - totals.customers_failed
                if report is not None and totals is not None
                else 0
            ),
            backlog=backlog,
            next_due_at=next_due,
            stopped_by=self.last_failure,
        )
        self.last_summary = summary
        log.info(
            "sweep_summary",
            summary=summary.line(),
            due=summary.due,
            synced=summary.synced,
            failed=summary.failed,
            handed_back=summary.handed_back,
            backlog=backlog,
            next_due_at=next_due.isoformat() if next_due is not None else None,
        )

    def credentials_rejected(self, reason: str) -> None:
        """Another job (a discovery) saw the API reject the credentials: health says so."""
        self.state.credentials_error = reason

    def _pass_failed(self, reason: str) -> None:
        self.last_failure = reason
        self.metrics.passes.labels(RunStatus.FAILED.value).inc()
        log.error("pass_failed", reason=reason)

    async def hand_back_leftovers(self) -> None:
        # Between sweeps this worker holds nothing; a sweep that ended early (fatal error,
        # cancelled) may have claimed customers it never started.
        try:
            released = await self._fleet.release_all(self.terms.worker_id)
        except DATABASE_ERRORS as exc:
            # The heartbeat keeps these leases alive, but the next sweep's end hands them back.
            log.warning("leases_not_released", error=describe_db_error(exc))
            return
        if released:
            log.info("leases_handed_back", customers=released)

    # -- the heartbeat ---------------------------------------------------------------------

    async def heartbeat(self) -> int:
        """Renew this worker's row and leases; returns how many workers are alive (0 when the
        database could not be reached)."""
        s = self._settings
        at = self.state.last_tick_at = self.clock()
        try:
            live = await self._fleet.heartbeat(self.terms.worker_id, s.sync_lease_ttl)
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            log.warning("heartbeat_failed", error=self.state.database_error)
            return 0
        self.state.database_error = None
        self.state.last_renewed_at = at
        if self._feed is not None:
            self._feed.renewed(at)
        share = rate_share(s.sync_rate_limit, live)
        self._client.set_rate_limit(share)
        self.metrics.live_workers.set(live)
        self.metrics.rate_share.set(share)
        await self.refresh_stalest()
        return live

    async def refresh_stalest(self) -> None:
        try:
            stalest = await self._fleet.stalest()
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            return
        if stalest is not None:
            self.state.stalest_label, self.state.stalest_since = stalest.label, stalest.since

    # -- health ----------------------------------------------------------------------------

    def liveness(self, *, scheduled: bool) -> Health:
        """Whether the scheduler loop still runs its jobs (``scheduled``: it has any)."""
        every = lease_renew_every(self._settings.sync_lease_ttl) if scheduled else None
        return assess_liveness(LivenessFacts(self.clock(), self.state.last_tick_at, every))

    async def readiness(self, *, scheduled: bool) -> Health:
        database_error = self.state.database_error
        try:
            await asyncio.wait_for(self._fleet.ping(), 5.0)
            database_error = None
        except TimeoutError:
            database_error = "no answer in 5s"
        except DATABASE_ERRORS as exc:
            database_error = describe_db_error(exc)
        age = None
        if self.state.stalest_since is not None:
            age = max(0.0, (utc_now() - self.state.stalest_since).total_seconds())
            self.metrics.stalest_age.set(age)
        breaker = self._engine.breaker
        tripped = breaker.tripped if breaker is not None else None
        health = assess_readiness(
            HealthFacts(
                now=self.clock(),
                started_at=self.state.started_at,
                max_staleness_s=self._settings.sync_max_staleness,
                database_error=database_error,
                credentials_error=self.state.credentials_error,
                last_ok_pass_at=self.state.last_ok_pass_at,
                stalest_label=self.state.stalest_label,
                stalest_age_s=age,
                api_error=str(tripped) if tripped is not None else self.state.api_error,
                lease_ttl_s=self._settings.sync_lease_ttl if scheduled else None,
                last_renewed_at=self.state.last_renewed_at,
            )
        )
        self.metrics.healthy.set(1 if health.ok else 0)
        self.metrics.api_reachable.set(0 if tripped is not None or self.state.api_error else 1)
        self.metrics.credentials_rejected.set(1 if self.state.credentials_error else 0)
        self.metrics.max_staleness.set(self._settings.sync_max_staleness)
        return health
