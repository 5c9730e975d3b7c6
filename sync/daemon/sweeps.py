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
from sync.daemon.health import Health, HealthFacts, assess_health
from sync.daemon.lease_feed import LeaseFeed, LeaseTerms
from sync.daemon.metrics import DaemonMetrics
from sync.daemon.schedule import DaemonSchedule, rate_share
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

# Customers claimed per trip to the database: enough to keep every worker busy, few enough
# that a crashed daemon strands little.
_CLAIM_BATCH_PER_WORKER = 2
# Let go of a customer this long before its lease would expire in the database.
_LEASE_SAFETY_S = 5.0


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
        ttl = settings.sync_lease_ttl
        self.terms = LeaseTerms(
            worker_id=worker_id,
            ttl=ttl,
            budget=ttl - min(_LEASE_SAFETY_S, ttl / 10),
            claim_batch=settings.sync_concurrency * _CLAIM_BATCH_PER_WORKER,
        )
        self.metrics = DaemonMetrics(self._client_tallies)
        self.state = DaemonState()
        self.last_report: RunReport | None = None
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

    async def sweep(self, *, full: bool) -> RunReport | None:
        """Sync what is due (every customer first, for a full reconcile); returns the pass's
        report, or None when no pass ran (nothing due, or a failure before it began)."""
        started = self.clock()
        self.last_report = None
        self.last_failure = None
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
        return self.last_report

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
        at = self.clock()
        try:
            live = await self._fleet.heartbeat(self.terms.worker_id, s.sync_lease_ttl)
        except DATABASE_ERRORS as exc:
            self.state.database_error = describe_db_error(exc)
            log.warning("heartbeat_failed", error=self.state.database_error)
            return 0
        self.state.database_error = None
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

    async def health(self) -> Health:
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
        health = assess_health(
            HealthFacts(
                now=self.clock(),
                started_at=self.state.started_at,
                max_staleness_s=self._settings.sync_max_staleness,
                database_error=database_error,
                credentials_error=self.state.credentials_error,
                last_ok_pass_at=self.state.last_ok_pass_at,
                stalest_label=self.state.stalest_label,
                stalest_age_s=age,
            )
        )
        self.metrics.healthy.set(1 if health.ok else 0)
        return health
