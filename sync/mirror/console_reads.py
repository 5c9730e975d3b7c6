"""What the operator console reads. Only reads, each bounded: pages of rows through an index
(keyset paging on the table's key, never OFFSET), counts, and small aggregates, so every page
stays quick at 100,000 customers (bench figures in the README's "Console" section).

A customer's state here is the ``report_sync_health`` view's word, with ``stale`` for an ``ok``
customer past SYNC_MAX_STALENESS (as ``status`` has it) and ``gone`` first for one discovery no
longer finds. The states are written as plain predicates on the tables, so a filter can use
the indexes of migration 0010; tests/integration/test_console_reads.py checks they give every
customer the view's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.domain.staleness import StalenessBucket
from sync.mirror.dialect import Dialect
from sync.mirror.models import (
    Customer,
    CustomerFile,
    CustomerSchedule,
    CustomerSyncState,
    DiscoveryGap,
    DiscoveryRun,
    DiscoveryState,
    FileArchiveState,
    RejectedCustomerRow,
    RejectedRecordRow,
    SyncRun,
    SyncWorker,
)

_C = cast(Table, Customer.__table__).c
_S = cast(Table, CustomerSyncState.__table__).c
_P = cast(Table, CustomerSchedule.__table__).c
_F = cast(Table, CustomerFile.__table__).c
_A = cast(Table, FileArchiveState.__table__).c
_RUNS = cast(Table, SyncRun.__table__)
_CUSTOMER_STATE = cast(Table, Customer.__table__).outerjoin(
    cast(Table, CustomerSyncState.__table__), _S.customer_ref == _C.id
)

# Worst first, as the overview lists them.
STATES = ("failing", "stale", "incomplete", "never_synced", "ok", "gone")


def state_predicates(stale_before: datetime) -> dict[str, ColumnElement[bool]]:
    """Each state as a condition on customers LEFT JOIN customer_sync_state; exactly one
    holds for every customer. ``stale_before``: now minus SYNC_MAX_STALENESS."""
    present = _C.gone_at.is_(None)
    clean = and_(present, or_(_S.consecutive_failures.is_(None), _S.consecutive_failures == 0))
    settled = and_(clean, _S.pass_started_at.is_(None))
    return {
        "gone": _C.gone_at.is_not(None),
        "failing": and_(present, _S.consecutive_failures > 0),
        "incomplete": and_(clean, _S.pass_started_at.is_not(None)),
        "never_synced": and_(settled, _S.last_success_at.is_(None)),
        "stale": and_(settled, _S.last_success_at < stale_before),
        "ok": and_(settled, _S.last_success_at >= stale_before),
    }


def _state_case(stale_before: datetime) -> ColumnElement[str]:
    predicates = state_predicates(stale_before)
    return case(*((condition, name) for name, condition in predicates.items()), else_="ok")


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    """One page of the customers table: a state (None for all), a search text, and where
    the page starts (``after`` a row id, or ending ``before`` one)."""

    state: str | None = None
    search: str = ""
    after: int | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    total: int  # rows matching, across every page
    more_before: bool
    more_after: bool


class ConsoleReads:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect

    async def now(self) -> datetime:
        async with self._engine.connect() as conn:
            return await self._dialect.read_now(conn)

    # -- overview --------------------------------------------------------------------------

    async def state_counts(self, now: datetime, max_staleness_s: float) -> dict[str, int]:
        """Customers per state, every state present (0 when none)."""
        state = _state_case(now - timedelta(seconds=max_staleness_s)).label("state")
        inner = select(state).select_from(_CUSTOMER_STATE).subquery()
        query = select(inner.c.state, func.count()).group_by(inner.c.state)
        async with self._engine.connect() as conn:
            found = {name: int(n) for name, n in (await conn.execute(query)).all()}
        return {name: found.get(name, 0) for name in STATES}

    async def staleness_histogram(
        self, now: datetime, buckets: Sequence[StalenessBucket]
    ) -> list[int]:
        """Customers (not gone) with a successful check, per bucket of its age."""
        index = case(
            *(
                (_S.last_success_at > now - timedelta(seconds=b.high_s), i)
                for i, b in enumerate(buckets)
                if b.high_s is not None
            ),
            else_=len(buckets) - 1,
        ).label("bucket")
        inner = (
            select(index)
            .select_from(_CUSTOMER_STATE)
            .where(_C.gone_at.is_(None), _S.last_success_at.is_not(None))
            .subquery()
        )
        query = select(inner.c.bucket, func.count()).group_by(inner.c.bucket)
        async with self._engine.connect() as conn:
            found = {int(i): int(n) for i, n in (await conn.execute(query)).all()}
        return [found.get(i, 0) for i in range(len(buckets))]

    async def runs_since(self, since: datetime) -> list[dict[str, Any]]:
        """Runs that started after ``since`` or were still going then (through the
        started_at index: a run older than a week that is still running is not shown)."""
        query = select(
            _RUNS.c.started_at,
            _RUNS.c.finished_at,
            _RUNS.c.status,
            _RUNS.c.records_inserted,
            _RUNS.c.records_updated,
            _RUNS.c.requests,
        ).where(_RUNS.c.started_at >= since - timedelta(days=7))
        async with self._engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        return [r for r in rows if r["finished_at"] is None or r["finished_at"] >= since]

    async def live_workers(self, now: datetime, lease_ttl_s: float) -> list[dict[str, Any]]:
        """The processes whose heartbeat is fresh, with how many customer leases each holds
        now, longest running first."""
        fresh = now - timedelta(seconds=lease_ttl_s)
        leases = (
            select(func.count())
            .where(_P.lease_owner == SyncWorker.worker_id, _P.lease_expires_at > now)
            .scalar_subquery()
        )
        query = (
            select(
                SyncWorker.worker_id,
                SyncWorker.hostname,
                SyncWorker.pid,
                SyncWorker.started_at,
                SyncWorker.heartbeat_at,
                leases.label("leases"),
            )
            .where(SyncWorker.heartbeat_at > fresh)
            .order_by(SyncWorker.started_at, SyncWorker.worker_id)
        )
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def discovery_status(self, now: datetime) -> dict[str, Any]:
        """Discovery's state row (the lease, a walk under way, the last finishes), its last
        runs with their counts, and the gaps and set-aside items recorded."""
        runs = (
            select(
                _RUNS.c.id,
                _RUNS.c.mode,
                _RUNS.c.status,
                _RUNS.c.started_at,
                _RUNS.c.finished_at,
                _RUNS.c.error_summary,
                DiscoveryRun.found,
                DiscoveryRun.new,
                DiscoveryRun.updated,
                DiscoveryRun.gone,
                DiscoveryRun.rejected,
                DiscoveryRun.gaps,
            )
            .select_from(_RUNS.outerjoin(DiscoveryRun, DiscoveryRun.run_id == _RUNS.c.id))
            .where(_RUNS.c.mode.in_(("discover", "discover_full")))
            .order_by(_RUNS.c.id.desc())
            .limit(5)
        )
        async with self._engine.connect() as conn:
            state = (await conn.execute(select(DiscoveryState.__table__))).mappings().first()
            recent = [dict(r) for r in (await conn.execute(runs)).mappings()]
            gaps = await conn.scalar(select(func.count()).select_from(DiscoveryGap)) or 0
            rejected = await conn.scalar(select(func.count()).select_from(RejectedCustomerRow)) or 0
        holder = None
        expires = state["lease_expires_at"] if state is not None else None
        if state is not None and state["lease_owner"] and expires is not None and expires > now:
            holder = state["lease_owner"]
        return {
            "holder": holder,
            "walking_since": state["walk_started_at"] if state and state["walk"] else None,
            "last_finished_at": state["last_finished_at"] if state else None,
            "last_full_finished_at": state["last_full_finished_at"] if state else None,
            "runs": recent,
            "gaps": int(gaps),
            "rejected": int(rejected),
        }

    # -- customers -------------------------------------------------------------------------

    async def customers(self, query: CustomerQuery, now: datetime, max_staleness_s: float) -> Page:
        """A page of customers in row order, matching ``query``."""
        stale_before = now - timedelta(seconds=max_staleness_s)
        conditions: list[ColumnElement[bool]] = []
        if query.state is not None:
            conditions.append(state_predicates(stale_before)[query.state])
        if query.search.strip():
            conditions.append(_search(query.search.strip()))
        files = (
            select(func.count())
            .where(_F.source_customer_id == _C.id, _F.deleted_at.is_(None))
            .scalar_subquery()
        )
        columns = select(
            _C.id,
            _C.customer_id,
            _C.external_user_id,
            _C.nickname,
            _C.owner_name,
            _C.gone_at,
            _S.last_success_at,
            _S.last_error,
            _S.consecutive_failures,
            _state_case(stale_before).label("state"),
            files.label("files"),
        ).select_from(_CUSTOMER_STATE)
        base = columns.where(*conditions)
        counted = select(func.count()).select_from(_CUSTOMER_STATE).where(*conditions)
        async with self._engine.connect() as conn:
            rows, more_before, more_after = await _keyset(
                conn, base, _C.id, query.after, query.before, query.limit
            )
            total = int(await conn.scalar(counted) or 0)
        return Page(rows, total, more_before, more_after)

    async def customer(self, ref: int, now: datetime, max_staleness_s: float) -> dict[str, Any]:
        """Everything about one customer (empty when there is no such row): its identity and
        discovered fields, its cursor state, its schedule and lease, its file and archive
        counts, and the runs under way at its last attempt and its last success."""
        stale_before = now - timedelta(seconds=max_staleness_s)
        query = (
            select(
                *cast(Table, Customer.__table__).c,
                *(c.label(f"sync_{c.name}") for c in cast(Table, CustomerSyncState.__table__).c),
                *(c.label(f"plan_{c.name}") for c in cast(Table, CustomerSchedule.__table__).c),
                _state_case(stale_before).label("state"),
            )
            .select_from(
                _CUSTOMER_STATE.outerjoin(
                    cast(Table, CustomerSchedule.__table__), _P.customer_ref == _C.id
                )
            )
            .where(_C.id == ref)
        )
        archive_status = case(
            (_F.content_sha256.is_not(None), "archived"),
            (_A.last_reason.is_not(None), "failed"),
            else_="pending",
        )
        archive = (
            select(archive_status.label("status"), func.count())
            .select_from(
                cast(Table, CustomerFile.__table__).outerjoin(
                    cast(Table, FileArchiveState.__table__), _A.file_id == _F.id
                )
            )
            .where(_F.source_customer_id == ref, _F.deleted_at.is_(None))
            .group_by(archive_status)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return {}
            found = dict(row)
            found["archive"] = {s: int(n) for s, n in (await conn.execute(archive)).all()}
            found["deleted_files"] = int(
                await conn.scalar(
                    select(func.count()).where(
                        _F.source_customer_id == ref, _F.deleted_at.is_not(None)
                    )
                )
                or 0
            )
            found["runs"] = await _runs_at(
                conn, [found["sync_last_attempt_at"], found["sync_last_success_at"]]
            )
        return found

    async def customer_files(
        self, ref: int, after: int | None, before: int | None, limit: int
    ) -> Page:
        """A page of one customer's files, highest record id (about: newest) first, with
        each file's archive state."""
        base = (
            select(
                _F.id,
                _F.create_time,
                _F.file_name,
                _F.file_type,
                _F.file_size_text,
                _F.author_name,
                _F.deleted_at,
                _F.content_sha256,
                _F.archived_at,
                _A.attempts,
                _A.last_reason,
                _A.last_error,
                _A.next_try_at,
            )
            .select_from(
                cast(Table, CustomerFile.__table__).outerjoin(
                    cast(Table, FileArchiveState.__table__), _A.file_id == _F.id
                )
            )
            .where(_F.source_customer_id == ref)
        )
        counted = select(func.count()).where(_F.source_customer_id == ref)
        async with self._engine.connect() as conn:
            rows, more_before, more_after = await _keyset(
                conn, base, _F.id, after, before, limit, descending=True
            )
            total = int(await conn.scalar(counted) or 0)
        return Page(rows, total, more_before, more_after)

    # -- runs and rejected items -----------------------------------------------------------

    async def runs(
        self,
        mode: str | None,
        status: str | None,
        after: int | None,
        before: int | None,
        limit: int,
    ) -> Page:
        """A page of runs, newest first, of one mode and status when given."""
        conditions = []
        if mode:
            conditions.append(_RUNS.c.mode == mode)
        if status:
            conditions.append(_RUNS.c.status == status)
        base = select(_RUNS).where(*conditions)
        counted = select(func.count()).select_from(_RUNS).where(*conditions)
        async with self._engine.connect() as conn:
            rows, more_before, more_after = await _keyset(
                conn, base, _RUNS.c.id, after, before, limit, descending=True
            )
            total = int(await conn.scalar(counted) or 0)
        return Page(rows, total, more_before, more_after)

    async def run_kinds(self) -> tuple[list[str], list[str]]:
        """The modes and statuses runs have, for the runs page's filters."""
        async with self._engine.connect() as conn:
            modes = list((await conn.execute(select(_RUNS.c.mode).distinct())).scalars())
            statuses = list((await conn.execute(select(_RUNS.c.status).distinct())).scalars())
        return sorted(modes), sorted(statuses)

    async def rejected_records(
        self, ref: int | None, after: int | None, before: int | None, limit: int
    ) -> Page:
        """A page of records set aside (of one customer when ``ref``), newest row first."""
        table = cast(Table, RejectedRecordRow.__table__)
        conditions = [table.c.customer_ref == ref] if ref is not None else []
        base = (
            select(*table.c, _C.customer_id, _C.external_user_id)
            .select_from(table.join(cast(Table, Customer.__table__), _C.id == table.c.customer_ref))
            .where(*conditions)
        )
        counted = select(func.count()).select_from(table).where(*conditions)
        async with self._engine.connect() as conn:
            rows, more_before, more_after = await _keyset(
                conn, base, table.c.id, after, before, limit, descending=True
            )
            total = int(await conn.scalar(counted) or 0)
        return Page(rows, total, more_before, more_after)

    async def rejected_reasons(self, limit: int = 20) -> list[tuple[str, int]]:
        """The commonest reasons records were set aside for, with how many."""
        table = cast(Table, RejectedRecordRow.__table__)
        query = (
            select(table.c.reason, func.count().label("n"))
            .group_by(table.c.reason)
            .order_by(func.count().desc(), table.c.reason)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [(reason, int(n)) for reason, n in (await conn.execute(query)).all()]

    async def rejected_customers(self, after: int | None, before: int | None, limit: int) -> Page:
        """A page of search items discovery set aside, newest row first."""
        table = cast(Table, RejectedCustomerRow.__table__)
        async with self._engine.connect() as conn:
            rows, more_before, more_after = await _keyset(
                conn, select(table), table.c.id, after, before, limit, descending=True
            )
            total = int(await conn.scalar(select(func.count()).select_from(table)) or 0)
        return Page(rows, total, more_before, more_after)


def _search(text: str) -> ColumnElement[bool]:
    """A customer id or WeCom id exactly, or a part of the nickname, remark or owner's name
    (without regard to case)."""
    needle = text.lower()
    matches: list[ColumnElement[bool]] = [
        _C.external_user_id == text,
        func.lower(_C.nickname).contains(needle, autoescape=True),
        func.lower(_C.remark).contains(needle, autoescape=True),
        func.lower(_C.owner_name).contains(needle, autoescape=True),
    ]
    if text.isascii() and text.isdigit() and len(text) < 19:
        matches.append(_C.customer_id == int(text))
    return or_(*matches)


async def _keyset(
    conn: AsyncConnection,
    query: Select[Any],
    key: Any,
    after: int | None,
    before: int | None,
    limit: int,
    *,
    descending: bool = False,
) -> tuple[list[dict[str, Any]], bool, bool]:
    """A page of ``query`` in ``key`` order: the first ``limit`` rows past ``after``, or the
    last ``limit`` before ``before``; and whether rows lie before and after the page. One row
    more than the page is read to know the latter without counting."""
    forward = before is None
    # "after" a key means further along the listing's order, whichever way the key runs.
    if after is not None:
        query = query.where(key < after if descending else key > after)
    if before is not None:
        query = query.where(key > before if descending else key < before)
    ascending = forward != descending
    order = key.asc() if ascending else key.desc()
    rows = [
        dict(r) for r in (await conn.execute(query.order_by(order).limit(limit + 1))).mappings()
    ]
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
        return rows, more, True
    return rows, after is not None, more


async def _runs_at(
    conn: AsyncConnection, instants: Sequence[datetime | None]
) -> list[dict[str, Any]]:
    """The runs under way at any of ``instants``, newest first (a pass records no rows per
    customer, so these are the runs that can have made that attempt)."""
    moments = [t for t in instants if t is not None]
    if not moments:
        return []
    during = [
        and_(
            _RUNS.c.started_at <= t,
            or_(_RUNS.c.finished_at.is_(None), _RUNS.c.finished_at >= t),
            _RUNS.c.started_at >= t - timedelta(days=7),
        )
        for t in moments
    ]
    query = (
        select(_RUNS)
        .where(or_(*during), _RUNS.c.mode.not_in(("discover", "discover_full")))
        .order_by(_RUNS.c.id.desc())
        .limit(10)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
