"""The customers of one daemon sweep: claimed from the fleet store as workers ask for them, each
held by a lease that page transactions renew and check."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from sync.daemon.schedule import PollPolicy, next_due, next_interval, retry_due
from sync.domain.customers import CustomerKey
from sync.domain.pager import PassMode
from sync.engine.feeds import Assignment, CustomerOutcome
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.fleet import Claim, FleetStore
from sync.mirror.leases import LeaseFence
from sync.mirror.models import utc_now

log = structlog.get_logger("tanma_sync.daemon")


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How this worker holds customers."""

    worker_id: str
    ttl: float  # SYNC_LEASE_TTL: how long a lease lasts in the database
    budget: float  # how long after a claim or renewal this worker may go on (ttl minus a margin)
    claim_batch: int  # customers claimed per trip to the database


# Customers claimed per trip to the database, per pass worker: enough to keep every worker
# busy, few enough that a crashed daemon strands little.
_CLAIM_BATCH_PER_WORKER = 2
# Let go of a customer this long before its lease would expire in the database.
_LEASE_SAFETY_S = 5.0


def lease_terms(worker_id: str, lease_ttl: float, concurrency: int) -> LeaseTerms:
    return LeaseTerms(
        worker_id=worker_id,
        ttl=lease_ttl,
        budget=lease_ttl - min(_LEASE_SAFETY_S, lease_ttl / 10),
        claim_batch=concurrency * _CLAIM_BATCH_PER_WORKER,
    )


class _HeldLeases:
    """What every lease-fed pass shares: the customers claimed and not yet handed out, and the
    deadline by which each must be let go, moved on by every renewal."""

    def __init__(
        self,
        fleet: FleetStore,
        terms: LeaseTerms,
        *,
        stopping: Callable[[], bool],
        clock: Callable[[], float],
    ) -> None:
        self._fleet = fleet
        self._terms = terms
        self._stopping = stopping
        self._clock = clock
        self._queue: list[Claim] = []
        self._claims: dict[int, Claim] = {}
        self._deadlines: dict[int, float] = {}
        self._lock = asyncio.Lock()

    def _hold(self, claims: list[Claim], claimed_at: float) -> None:
        for claim in claims:
            self._claims[claim.customer.ref] = claim
            self._deadlines[claim.customer.ref] = claimed_at + self._terms.budget
        self._queue.extend(claims)

    def _let_go(self, ref: int) -> Claim | None:
        self._deadlines.pop(ref, None)
        return self._claims.pop(ref, None)

    def renewed(self, at: float) -> None:
        """A heartbeat renewed every lease this worker holds, as of clock time ``at``."""
        for ref in self._claims:
            self._deadlines[ref] = at + self._terms.budget

    def may_continue(self, customer: CustomerKey) -> str | None:
        if self._stopping():
            return "shutting down"
        if self._clock() >= self._deadlines.get(customer.ref, 0.0):
            return "its lease ran out"
        return None

    def deadline(self, customer: CustomerKey) -> float | None:
        return self._deadlines.get(customer.ref)

    def fence(self, customer: CustomerKey) -> LeaseFence | None:
        terms = self._terms
        deadlines = self._deadlines

        def renewed(at: float) -> None:
            deadlines[customer.ref] = at + terms.budget

        return LeaseFence(
            terms.worker_id, customer.ref, terms.ttl, clock=self._clock, on_renewed=renewed
        )


# Told of each customer a sweep finished: its ref, when its sync began, how it ended.
AfterFinish = Callable[[int, datetime, CustomerOutcome], Awaitable[None]]


class LeaseFeed(_HeldLeases):
    """A daemon sweep's customers: those due, most overdue first, planned again when done."""

    def __init__(
        self,
        fleet: FleetStore,
        terms: LeaseTerms,
        policy: PollPolicy,
        *,
        stopping: Callable[[], bool],
        on_outcome: Callable[[CustomerOutcome], None],
        rng: random.Random,
        clock: Callable[[], float],
        after_finish: AfterFinish | None = None,
    ) -> None:
        super().__init__(fleet, terms, stopping=stopping, clock=clock)
        self._after_finish = after_finish
        self._started: dict[int, datetime] = {}
        self._policy = policy
        self._on_outcome = on_outcome
        self._rng = rng
        # Only what is due when the sweep starts: a customer polled every few seconds must not
        # keep one sweep going forever.
        self._due_by = utc_now()
        self._exhausted = False
        # Why claiming stopped early (the database failed), for the sweep to report.
        self.database_error: str | None = None

    async def prime(self) -> bool:
        """Claim the first batch; False when nothing is due (the sweep is skipped)."""
        await self._refill()
        return bool(self._queue)

    async def _refill(self) -> None:
        if self._exhausted or self._stopping():
            return
        terms = self._terms
        claimed_at = self._clock()
        try:
            claims = await self._fleet.claim_due(
                terms.worker_id, terms.claim_batch, terms.ttl, due_by=self._due_by
            )
        except DATABASE_ERRORS as exc:
            # Raised inside a worker this would end the pass as an internal error; instead the
            # customers already held are finished and the rest wait for the next sweep.
            self._exhausted = True
            self.database_error = describe_db_error(exc)
            return
        if not claims:
            self._exhausted = True
        self._hold(claims, claimed_at)

    async def next(self) -> Assignment | None:
        async with self._lock:
            if not self._queue:
                await self._refill()
            if not self._queue or self._stopping():
                return None
            claim = self._queue.pop(0)
        self._started[claim.customer.ref] = utc_now()
        mode = PassMode.FULL if claim.full else PassMode.INCREMENTAL
        return Assignment(claim.customer, mode)

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None:
        ref = assignment.customer.ref
        claim = self._let_go(ref)
        assert claim is not None, "a customer handed out is held until it is finished"
        started = self._started.pop(ref)
        self._on_outcome(outcome)
        await self._finish(assignment, outcome, claim)
        if self._after_finish is not None:
            await self._after_finish(ref, started, outcome)

    async def _finish(self, assignment: Assignment, outcome: CustomerOutcome, claim: Claim) -> None:
        ref = assignment.customer.ref
        worker_id = self._terms.worker_id
        try:
            if outcome.stopped is not None:
                await self._fleet.release(worker_id, [ref])
                return
            now = utc_now()
            if outcome.error is not None:
                await self._fleet.finish_customer(
                    worker_id,
                    ref,
                    next_due_at=retry_due(self._policy, now),
                    poll_interval_s=None,
                    found_new=False,
                    full_done=False,
                )
                return
            found_new = outcome.counts.inserted > 0
            interval = next_interval(self._policy, claim.poll_interval_s, found_new)
            spread = self._rng.uniform(-1.0, 1.0)
            await self._fleet.finish_customer(
                worker_id,
                ref,
                next_due_at=next_due(self._policy, now, interval, now, spread=spread),
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


# Customers offered per claim of a command-line pass (one IN list), and how often it looks
# again when every customer left is held by another worker.
_CHOSEN_PER_CLAIM = 500
_HELD_ELSEWHERE_POLL_S = 1.0
# A command-line pass hands finished customers back together, one statement for all, where a
# transaction per customer cost about a sixth of a PostgreSQL backfill's CPU (BENCHMARKS.md):
# at the finish that makes this many, or that comes this long after the first of them, and at
# every finish once nothing is left to hand out; the pass's end hands back the rest
# (membership.py). Until then they stay leased to the pass, which has just synced them.
_RELEASE_BATCH = 64
_RELEASE_AFTER_S = 1.0


class ChosenLeaseFeed(_HeldLeases):
    """The customers of a command-line pass on PostgreSQL, each once and all in one mode,
    taken through leases like a daemon's: a customer another worker holds waits until it is
    let go (a daemon holds one only while syncing it, a crashed one until its lease expires).
    Finished customers are handed back with their schedule untouched."""

    def __init__(
        self,
        fleet: FleetStore,
        terms: LeaseTerms,
        customers: list[CustomerKey],
        mode: PassMode,
        *,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(fleet, terms, stopping=lambda: False, clock=clock)
        self._mode = mode
        self._waiting = {c.ref for c in customers}
        self._order = [c.ref for c in customers]
        self._told_held = False
        self._done: list[int] = []  # finished, their leases not yet handed back
        self._done_since = 0.0

    async def _refill(self) -> None:
        terms = self._terms
        while self._waiting:
            refs = [ref for ref in self._order if ref in self._waiting]
            self._order = refs
            for start in range(0, len(refs), _CHOSEN_PER_CLAIM):
                claimed_at = self._clock()
                offered = refs[start : start + _CHOSEN_PER_CLAIM]
                claims = await self._fleet.claim_chosen(terms.worker_id, offered, terms.ttl)
                if claims:
                    self._waiting.difference_update(c.customer.ref for c in claims)
                    self._hold(claims, claimed_at)
                    return
            # Every customer left is held by another worker right now.
            if not self._told_held:
                self._told_held = True
                log.info("customers_held_elsewhere", customers=len(self._waiting))
            await asyncio.sleep(_HELD_ELSEWHERE_POLL_S)

    async def next(self) -> Assignment | None:
        async with self._lock:
            if not self._queue:
                await self._refill()
            if not self._queue:
                return None
            claim = self._queue.pop(0)
        return Assignment(claim.customer, self._mode)

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None:
        self._let_go(assignment.customer.ref)
        if not self._done:
            self._done_since = self._clock()
        self._done.append(assignment.customer.ref)
        if (
            len(self._done) >= _RELEASE_BATCH
            or self._clock() - self._done_since >= _RELEASE_AFTER_S
            or not (self._queue or self._waiting)
        ):
            await self._release_done()

    async def _release_done(self) -> None:
        refs, self._done = self._done, []
        try:
            await self._fleet.release(self._terms.worker_id, refs)
        except DATABASE_ERRORS as exc:
            # The leases run out by themselves, and the pass's end hands back what is left.
            log.warning("leases_not_released", customers=len(refs), error=describe_db_error(exc))
