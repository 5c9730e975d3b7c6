"""The daemons' shared state, behind one narrow layer: who is alive, which customer is due,
and who holds it.

A worker owns a customer while its lease in ``customer_schedule`` has not expired. Claims take
due rows with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers claiming at the
same moment never get the same customer; every page transaction re-checks (and renews) the lease
inside the transaction (``sync/mirror/leases.py``), so a worker that lost its lease cannot write
a page.

Times that several hosts compare (lease expiry, heartbeats) come from PostgreSQL's clock, not
from each host's. SQLite serves one daemon only, whose own clock is then the only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.domain.customers import CustomerKey, customer_label
from sync.mirror.dialect import Dialect
from sync.mirror.models import (
    Customer,
    CustomerSchedule,
    CustomerSyncState,
    SyncWorker,
)

# A declarative class's __table__ is a Table; SQLAlchemy's stubs only promise a FromClause.
_SCHEDULE = cast(Table, CustomerSchedule.__table__)
# A paused customer (`customer pause`) is never claimed by a sweep, nor counted stale.
_NOT_PAUSED = ~(
    select(Customer.id)
    .where(Customer.id == _SCHEDULE.c.customer_ref, Customer.paused_at.is_not(None))
    .exists()
)
# Never-planned customers (new ones) first, then by due time; the id makes the order total.
_MOST_OVERDUE_FIRST = (_SCHEDULE.c.next_due_at.asc().nulls_first(), _SCHEDULE.c.customer_ref)


@dataclass(frozen=True, slots=True)
class Claim:
    """A customer this worker now holds, with what the scheduling policy needs to know."""

    customer: CustomerKey
    full: bool
    poll_interval_s: float | None


@dataclass(frozen=True, slots=True)
class Stalest:
    """The customer checked longest ago (never-checked ones count from when they were added)."""

    label: str
    since: datetime


@dataclass(frozen=True, slots=True)
class Outlook:
    """What is ahead of the daemons: customers due now (the backlog) and the next due time."""

    backlog: int
    next_due_at: datetime | None


class FleetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = Dialect(engine)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # -- workers ---------------------------------------------------------------------------

    async def register_worker(self, worker_id: str, hostname: str, pid: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(SyncWorker).where(SyncWorker.worker_id == worker_id))
            await conn.execute(
                insert(SyncWorker).values(
                    worker_id=worker_id,
                    hostname=hostname,
                    pid=pid,
                    started_at=self._dialect.now(),
                    heartbeat_at=self._dialect.now(),
                )
            )
        # Stamped again once the row is visible to every transaction: a heartbeat stamped
        # later than ``started_at`` then began after this commit, so it counted this worker
        # (``uncounted_by``).
        async with self.engine.begin() as conn:
            await conn.execute(
                update(SyncWorker)
                .where(SyncWorker.worker_id == worker_id)
                .values(started_at=self._dialect.now())
            )

    async def heartbeat(self, worker_id: str, lease_ttl: float) -> int:
        """Renew this worker's row and leases; returns how many workers are alive."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(SyncWorker)
                .where(SyncWorker.worker_id == worker_id)
                .values(heartbeat_at=self._dialect.now())
            )
            await conn.execute(
                update(CustomerSchedule)
                .where(
                    CustomerSchedule.lease_owner == worker_id,
                    CustomerSchedule.lease_expires_at > self._dialect.now(),
                )
                .values(lease_expires_at=self._dialect.now(lease_ttl))
            )
            return await self._live_workers(conn, lease_ttl)

    async def uncounted_by(self, worker_id: str, lease_ttl: float) -> int:
        """How many other live workers have not had a heartbeat since this one registered:
        each of them may still spend a share of the rate limit that leaves this one out."""
        registered = (
            select(SyncWorker.started_at).where(SyncWorker.worker_id == worker_id).scalar_subquery()
        )
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).where(
                    SyncWorker.worker_id != worker_id,
                    SyncWorker.heartbeat_at > self._dialect.now(-lease_ttl),
                    SyncWorker.heartbeat_at <= registered,
                )
            )
        return int(count or 0)

    async def _live_workers(self, conn: AsyncConnection, lease_ttl: float) -> int:
        # A worker that missed its heartbeats for a whole lease lifetime is gone.
        count = await conn.scalar(
            select(func.count()).where(SyncWorker.heartbeat_at > self._dialect.now(-lease_ttl))
        )
        return int(count or 0)

    async def deregister_worker(self, worker_id: str) -> None:
        """Hand back every lease and leave; the others take the customers on their next claim."""
        async with self.engine.begin() as conn:
            await self._release_all(conn, worker_id)
            await conn.execute(delete(SyncWorker).where(SyncWorker.worker_id == worker_id))

    async def release_all(self, worker_id: str) -> int:
        async with self.engine.begin() as conn:
            return await self._release_all(conn, worker_id)

    async def _release_all(self, conn: AsyncConnection, worker_id: str) -> int:
        result = await conn.execute(
            update(CustomerSchedule)
            .where(CustomerSchedule.lease_owner == worker_id)
            .values(lease_owner=None, lease_expires_at=None)
        )
        return result.rowcount

    # -- schedule --------------------------------------------------------------------------

    async def ensure_schedule_rows(self) -> int:
        """Give every customer (new ones too) a schedule row; a new row is due at once."""
        missing = select(Customer.id).where(
            ~select(_SCHEDULE.c.customer_ref)
            .where(_SCHEDULE.c.customer_ref == Customer.id)
            .exists()
        )
        stmt = (
            self._dialect.insert(_SCHEDULE)
            .from_select(["customer_ref"], missing)
            .on_conflict_do_nothing(index_elements=[_SCHEDULE.c.customer_ref])
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def request_full(self, min_gap_s: float) -> int:
        """Mark every customer for a full reconcile, due now, unless it had one (or was
        marked) within ``min_gap_s``: several daemons firing the same schedule ask once."""
        recent = self._dialect.now(-min_gap_s)
        stmt = (
            update(CustomerSchedule)
            .where(
                CustomerSchedule.full_requested_at.is_(None),
                or_(
                    CustomerSchedule.last_full_at.is_(None),
                    CustomerSchedule.last_full_at < recent,
                ),
            )
            .values(full_requested_at=self._dialect.now(), next_due_at=self._dialect.now())
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def claim_due(
        self, worker_id: str, limit: int, lease_ttl: float, *, due_by: datetime
    ) -> list[Claim]:
        """Lease up to ``limit`` customers due by ``due_by`` that nobody holds, most overdue
        first. (Due times are the daemons' plan, written from their clocks; lease expiry is
        the database's clock.)"""
        due = or_(_SCHEDULE.c.next_due_at.is_(None), _SCHEDULE.c.next_due_at <= due_by)
        return await self._claim(worker_id, due & _NOT_PAUSED, limit, lease_ttl)

    async def claim_chosen(
        self, worker_id: str, customer_refs: Sequence[int], lease_ttl: float
    ) -> list[Claim]:
        """Lease those of ``customer_refs`` that nobody holds, due or not (a command-line pass
        syncs the customers it was given, beside the daemons). Every customer needs its
        schedule row first (ensure_schedule_rows)."""
        if not customer_refs:
            return []
        chosen = _SCHEDULE.c.customer_ref.in_(list(customer_refs))
        return await self._claim(worker_id, chosen, len(customer_refs), lease_ttl)

    async def _claim(
        self, worker_id: str, which: ColumnElement[bool], limit: int, lease_ttl: float
    ) -> list[Claim]:
        now = self._dialect.now()
        free = or_(_SCHEDULE.c.lease_owner.is_(None), _SCHEDULE.c.lease_expires_at < now)
        candidates = (
            select(_SCHEDULE.c.customer_ref)
            .where(which, free)
            .order_by(*_MOST_OVERDUE_FIRST)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        take = (
            update(_SCHEDULE)
            .where(_SCHEDULE.c.customer_ref.in_(candidates.scalar_subquery()))
            .values(lease_owner=worker_id, lease_expires_at=self._dialect.now(lease_ttl))
            .returning(_SCHEDULE.c.customer_ref)
        )
        async with self.engine.begin() as conn:
            refs = [row.customer_ref for row in await conn.execute(take)]
            if not refs:
                return []
            rows = await conn.execute(
                select(
                    Customer.id,
                    Customer.customer_id,
                    Customer.external_user_id,
                    Customer.user_id,
                    Customer.sales_id,
                    _SCHEDULE.c.full_requested_at,
                    _SCHEDULE.c.poll_interval_s,
                )
                .join(_SCHEDULE, _SCHEDULE.c.customer_ref == Customer.id)
                .where(Customer.id.in_(refs))
                .order_by(*_MOST_OVERDUE_FIRST)
            )
            return [
                Claim(
                    CustomerKey(
                        row.id, row.customer_id, row.external_user_id, row.user_id, row.sales_id
                    ),
                    full=row.full_requested_at is not None,
                    poll_interval_s=row.poll_interval_s,
                )
                for row in rows
            ]

    async def finish_customer(
        self,
        worker_id: str,
        customer_ref: int,
        *,
        next_due_at: datetime,
        poll_interval_s: float | None,
        found_new: bool,
        full_done: bool,
    ) -> bool:
        """Record a finished check and hand the lease back; False if the lease was lost."""
        values: dict[str, Any] = {
            "next_due_at": next_due_at,
            "lease_owner": None,
            "lease_expires_at": None,
            "last_worker_id": worker_id,
        }
        if poll_interval_s is not None:
            values["poll_interval_s"] = poll_interval_s
        if found_new:
            values["last_new_files_at"] = self._dialect.now()
        if full_done:
            values |= {"full_requested_at": None, "last_full_at": self._dialect.now()}
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(CustomerSchedule)
                .where(
                    CustomerSchedule.customer_ref == customer_ref,
                    CustomerSchedule.lease_owner == worker_id,
                )
                .values(values)
            )
            return result.rowcount == 1

    async def release(self, worker_id: str, customer_refs: Sequence[int]) -> None:
        """Hand leases back without touching the plan: the customers stay due."""
        if not customer_refs:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(CustomerSchedule)
                .where(
                    CustomerSchedule.customer_ref.in_(list(customer_refs)),
                    CustomerSchedule.lease_owner == worker_id,
                )
                .values(lease_owner=None, lease_expires_at=None)
            )

    # -- health ----------------------------------------------------------------------------

    async def outlook(self, now: datetime) -> Outlook:
        """Customers due by ``now`` (never-planned ones included) and the earliest later due
        time, for a sweep's summary line."""
        due = or_(_SCHEDULE.c.next_due_at.is_(None), _SCHEDULE.c.next_due_at <= now)
        query = select(
            func.count().filter(due & _NOT_PAUSED),
            func.min(_SCHEDULE.c.next_due_at).filter(_SCHEDULE.c.next_due_at > now),
        )
        async with self.engine.connect() as conn:
            backlog, next_due = (await conn.execute(query)).one()
        if isinstance(next_due, str):  # SQLite hands back text from an aggregate
            next_due = datetime.fromisoformat(next_due)
        if next_due is not None and next_due.tzinfo is None:
            next_due = next_due.replace(tzinfo=UTC)
        return Outlook(int(backlog or 0), next_due)

    async def failing_count(self) -> int:
        """Customers still listed upstream whose last check failed (the ``failing`` state)."""
        query = (
            select(func.count())
            .select_from(CustomerSyncState)
            .join(Customer, Customer.id == CustomerSyncState.customer_ref)
            .where(CustomerSyncState.consecutive_failures > 0, Customer.gone_at.is_(None))
        )
        async with self.engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def stalest(self) -> Stalest | None:
        """The customer whose last successful check is oldest, or None without customers."""
        since = func.coalesce(CustomerSyncState.last_success_at, Customer.created_at)
        query = (
            select(Customer.customer_id, Customer.external_user_id, since.label("since"))
            .outerjoin(CustomerSyncState, CustomerSyncState.customer_ref == Customer.id)
            .where(Customer.paused_at.is_(None))
            .order_by(since.asc(), Customer.id)
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        since_value = row.since
        if isinstance(since_value, str):  # SQLite hands back text from coalesce()
            since_value = datetime.fromisoformat(since_value)
        if since_value.tzinfo is None:
            since_value = since_value.replace(tzinfo=UTC)
        return Stalest(customer_label(row.customer_id, row.external_user_id), since_value)
