"""Discovery's database side: the lease on the one discovery that may run, pages of discovered
customers written with the walk's state after them in one transaction, and the end of a walk
(gaps recorded, customers gone from a full walk marked, the run's counts).

A page transaction first moves the walk state forward *only if this process still holds the
lease*; otherwise it raises ``LeaseLost`` and nothing of its pages is written. So a discovery
that lost its lease (expired while the database was away, taken over by another daemon) can
never write over the walk of the one that took it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.domain.discovered import DiscoveredCustomer, RejectedCustomer, payload_digest
from sync.domain.discovery import DiscoveryWalk, Gap
from sync.domain.errors import LeaseLost
from sync.domain.jsoncodec import encode_json
from sync.mirror.dialect import Dialect
from sync.mirror.driver_values import postgres_stamp, sqlite_stamp
from sync.mirror.models import (
    Customer,
    CustomerSchedule,
    CustomerSyncState,
    DiscoveryGap,
    DiscoveryRun,
    DiscoveryState,
    RejectedCustomerRow,
)
from sync.mirror.owners import Owner, pid_exists

_STATE_ROW = 1
_CUSTOMERS = cast(Table, Customer.__table__)
_STATE = cast(Table, DiscoveryState.__table__)
# What a discovered item fills in; identity columns only when the item has them.
_DESCRIPTIVE = (
    "nickname",
    "remark",
    "owner_name",
    "tanma_create_time",
    "last_follow_time",
    "is_friend",
    "delete_status",
    "raw",
)
_IDENTITY = ("customer_id", "external_user_id", "user_id", "sales_id")
_TIMES = ("tanma_create_time", "last_follow_time")
# A new customer's row: what the item fills in, and when the walk first and last saw it.
_INSERT_COLUMNS = (
    *_IDENTITY,
    *_DESCRIPTIVE,
    "first_seen_at",
    "last_seen_at",
    "gone_at",
    "created_at",
    "updated_at",
)
_STAMPED = ("first_seen_at", "last_seen_at", "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the discovery lease."""

    owner: str
    hostname: str | None
    pid: int | None
    space: str | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class WalkInProgress:
    walk: DiscoveryWalk
    started_at: datetime


@dataclass
class DiscoveryCounts:
    """What discovery did to the customers table (per page, and added up per run)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    gone: int = 0
    hinted: int = 0  # customers made due by a moved qwLastFollowTime
    conflicts: list[str] = field(default_factory=list)

    def add(self, other: DiscoveryCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.gone += other.gone
        self.hinted += other.hinted
        self.conflicts.extend(other.conflicts)


class DiscoveryStore:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect
        insert = dialect.insert
        self._insert = insert
        rejected = RejectedCustomerRow.__table__
        set_aside = insert(rejected)
        self._set_aside_stmt = set_aside.on_conflict_do_update(
            index_elements=[rejected.c.payload_sha256],
            set_={
                "last_rejected_at": set_aside.excluded.last_rejected_at,
                "run_id": set_aside.excluded.run_id,
                "reason": set_aside.excluded.reason,
            },
        )
        # A first discovery inserts every customer it finds: that insert runs as driver SQL
        # with rows already in the driver's form, as the file upsert does (sync/mirror/pages.py),
        # since SQLAlchemy's per-row parameter processing cost more than the database's work.
        compiled = _CUSTOMERS.insert().compile(
            dialect=engine.dialect, column_keys=list(_INSERT_COLUMNS)
        )
        order = compiled.positiontup
        if order is None or set(order) != set(_INSERT_COLUMNS):
            raise RuntimeError("the customers insert must bind exactly the discovered columns")
        self._insert_sql = str(compiled)
        self._new_row = _NewCustomerRow(order, postgres_stamp if dialect.postgres else sqlite_stamp)
        changed = [*_IDENTITY, *_DESCRIPTIVE, "last_seen_at", "gone_at", "updated_at"]
        self._update_stmt = (
            update(_CUSTOMERS)
            .where(_CUSTOMERS.c.id == bindparam("ref"))
            .values({name: bindparam(name) for name in changed})
        )

    # -- the lease -------------------------------------------------------------------------

    async def claim(
        self,
        worker: str,
        owner: Owner,
        ttl: float,
        *,
        alive: Callable[[int], bool] = pid_exists,
    ) -> Holder | None:
        """Take the discovery lease for ``ttl`` seconds; None when taken, else who holds it.
        A lease that expired, or whose holder is a process on this host that no longer exists,
        is taken over."""
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(_STATE)
                .values(id=_STATE_ROW)
                .on_conflict_do_nothing(index_elements=[_STATE.c.id])
            )
            row = (
                await conn.execute(
                    select(
                        _STATE.c.lease_owner,
                        _STATE.c.lease_hostname,
                        _STATE.c.lease_pid,
                        _STATE.c.lease_process_space,
                        _STATE.c.lease_expires_at,
                    ).where(_STATE.c.id == _STATE_ROW)
                )
            ).one()
            holder = Holder(*row)
            current = await self._dialect.read_now(conn)
            free = (
                holder.owner is None
                or holder.owner == worker
                or holder.expires_at is None
                or holder.expires_at < current
                or _dead_here(holder, owner, alive)
            )
            if not free:
                return holder
            result = await conn.execute(
                update(_STATE)
                .where(
                    _STATE.c.id == _STATE_ROW,
                    _same_or_null(_STATE.c.lease_owner, holder.owner),
                )
                .values(
                    lease_owner=worker,
                    lease_hostname=owner.hostname,
                    lease_pid=owner.pid,
                    lease_process_space=owner.space,
                    lease_expires_at=self._dialect.now(ttl),
                )
            )
            if result.rowcount != 1:
                return holder
        return None

    async def release(self, worker: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_STATE)
                .where(_STATE.c.id == _STATE_ROW, _STATE.c.lease_owner == worker)
                .values(
                    lease_owner=None,
                    lease_hostname=None,
                    lease_pid=None,
                    lease_process_space=None,
                    lease_expires_at=None,
                )
            )

    async def _fence(
        self, conn: AsyncConnection, worker: str, ttl: float, values: dict[str, Any]
    ) -> None:
        """Within a transaction: renew the lease and write ``values`` to the state row, or
        raise LeaseLost (rolling the transaction back) when the lease is no longer ours."""
        result = await conn.execute(
            update(_STATE)
            .where(
                _STATE.c.id == _STATE_ROW,
                _STATE.c.lease_owner == worker,
                _STATE.c.lease_expires_at >= self._dialect.now(),
            )
            .values(lease_expires_at=self._dialect.now(ttl), **values)
        )
        if result.rowcount != 1:
            raise LeaseLost("the discovery lease was lost (expired or taken over)")

    # -- the walk --------------------------------------------------------------------------

    async def walk_in_progress(self) -> WalkInProgress | None:
        """The walk a discovery left unfinished, or None. A state row that does not read
        back as a walk (written by another version, say) counts as none."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(_STATE.c.walk, _STATE.c.walk_started_at).where(_STATE.c.id == _STATE_ROW)
                )
            ).one_or_none()
        if row is None or row.walk is None or row.walk_started_at is None:
            return None
        try:
            walk = DiscoveryWalk.from_json(json.loads(row.walk))
        except (ValueError, KeyError, TypeError):
            return None
        return WalkInProgress(walk, row.walk_started_at)

    async def newest_create_time(self) -> datetime | None:
        """The newest Tanmarket create time among the customers discovery has found."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(func.max(_CUSTOMERS.c.tanma_create_time)).where(
                    _CUSTOMERS.c.first_seen_at.is_not(None)
                )
            )
        return _as_utc(value)

    async def begin_walk(
        self,
        worker: str,
        ttl: float,
        walk: DiscoveryWalk,
        run_id: int,
        started_at: datetime | None,
    ) -> datetime:
        """Record the walk as under way for this run; returns when it started: ``started_at``
        for a resumed walk, else now (the database's clock, which stamps every customer the
        walk sees, so "not seen since the start" is decided on one clock)."""
        async with self._engine.begin() as conn:
            started = started_at or await self._dialect.read_now(conn)
            await self._fence(
                conn,
                worker,
                ttl,
                {"walk": _walk_text(walk), "run_id": run_id, "walk_started_at": started},
            )
        return started

    async def save_pages(
        self,
        worker: str,
        ttl: float,
        walk: DiscoveryWalk,
        run_id: int,
        customers: Sequence[DiscoveredCustomer],
        rejected: Sequence[RejectedCustomer],
        *,
        follow_hint: bool,
    ) -> DiscoveryCounts:
        """Search pages in one transaction: their customers (in the order the walk read them),
        their rejected items and the walk's state after the last of them. LeaseLost (nothing
        written) when the lease is no longer ours."""
        counts = DiscoveryCounts()
        async with self._engine.begin() as conn:
            await self._fence(conn, worker, ttl, {"walk": _walk_text(walk), "run_id": run_id})
            await self._dialect.plan_each_statement(conn)
            now = await self._dialect.read_now(conn)
            hinted: dict[int, datetime] = {}
            for batch in _without_shared_keys(customers):
                hinted |= await self._upsert_customers(conn, batch, now, counts)
            if rejected:
                await self._set_aside(conn, rejected, run_id, now)
                counts.rejected = len(rejected)
            if follow_hint and hinted:
                counts.hinted = await self._make_due(conn, hinted)
        return counts

    async def finish_walk(
        self,
        worker: str,
        ttl: float,
        walk: DiscoveryWalk,
        run_id: int,
        started_at: datetime,
        *,
        mark_gone: bool,
    ) -> int:
        """End the walk: record its gaps, mark customers a full walk no longer saw as gone
        (only when it has no gap: a gap may hide customers that exist), clear the walk.
        Returns how many customers were marked gone."""
        async with self._engine.begin() as conn:
            now = await self._dialect.read_now(conn)
            values: dict[str, Any] = {
                "walk": None,
                "walk_started_at": None,
                "last_finished_at": now,
            }
            if walk.full:
                values["last_full_finished_at"] = now
            await self._fence(conn, worker, ttl, values)
            gone = 0
            if mark_gone and not walk.gaps:
                result = await conn.execute(
                    update(_CUSTOMERS)
                    .where(
                        _CUSTOMERS.c.first_seen_at.is_not(None),
                        _CUSTOMERS.c.gone_at.is_(None),
                        _CUSTOMERS.c.last_seen_at < started_at,
                    )
                    .values(gone_at=now)
                )
                gone = result.rowcount
            if walk.gaps:
                await conn.execute(
                    cast(Table, DiscoveryGap.__table__).insert(),
                    [_gap_row(gap, run_id, now) for gap in walk.gaps],
                )
        return gone

    async def record_run(
        self, run_id: int, walk: DiscoveryWalk, counts: DiscoveryCounts, found: int
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(DiscoveryRun.__table__)
                .values(
                    run_id=run_id,
                    full=walk.full,
                    found=found,
                    new=counts.new,
                    updated=counts.updated,
                    unchanged=counts.unchanged,
                    gone=counts.gone,
                    rejected=counts.rejected,
                    windows=walk.windows_done,
                    windows_split=walk.windows_split,
                    rewalks=walk.rewalks,
                    gaps=len(walk.gaps),
                )
                .on_conflict_do_nothing(index_elements=["run_id"])
            )

    async def gaps(self, run_id: int) -> list[dict[str, Any]]:
        table = DiscoveryGap.__table__
        query = select(table).where(table.c.run_id == run_id).order_by(table.c.id)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    # -- the rows --------------------------------------------------------------------------

    async def _upsert_customers(
        self,
        conn: AsyncConnection,
        customers: Sequence[DiscoveredCustomer],
        now: datetime,
        counts: DiscoveryCounts,
    ) -> dict[int, datetime]:
        """Insert new customers and refresh known ones (no two of them share a customer_id or
        an external_user_id); returns the refs whose follow-up time moved forward, with that
        time."""
        if not customers:
            return {}
        ids = [c.customer_id for c in customers if c.customer_id is not None]
        exts = [c.external_user_id for c in customers if c.external_user_id is not None]
        columns = [_CUSTOMERS.c.id, *(_CUSTOMERS.c[n] for n in (*_IDENTITY, *_DESCRIPTIVE))]
        known_rows = (
            await conn.execute(
                select(*columns, _CUSTOMERS.c.gone_at, _CUSTOMERS.c.first_seen_at).where(
                    or_(_CUSTOMERS.c.customer_id.in_(ids), _CUSTOMERS.c.external_user_id.in_(exts))
                )
            )
        ).mappings()
        by_id: dict[int, dict[str, Any]] = {}
        by_ext: dict[str, dict[str, Any]] = {}
        for row in known_rows:
            record = dict(row)
            if record["customer_id"] is not None:
                by_id[record["customer_id"]] = record
            if record["external_user_id"] is not None:
                by_ext[record["external_user_id"]] = record
        inserts: list[tuple[Any, ...]] = []
        new_row = self._new_row
        now_value = new_row.stamp(now)
        changes: list[dict[str, Any]] = []
        seen_refs: list[int] = []
        hinted: dict[int, datetime] = {}
        for customer in customers:
            match = by_id.get(customer.customer_id) if customer.customer_id is not None else None
            if match is None and customer.external_user_id is not None:
                match = by_ext.get(customer.external_user_id)
            clash = _identity_clash(customer, match, by_ext)
            if clash:
                counts.conflicts.append(clash)
                continue
            if match is None:
                inserts.append(new_row(customer, now_value))
                counts.new += 1
                continue
            fields = _fields(customer)
            merged = {name: match[name] for name in _IDENTITY} | {
                name: value for name, value in fields.items() if value is not None
            }
            merged |= {name: fields[name] for name in _DESCRIPTIVE}
            moved = customer.last_follow_time
            before = _as_utc(match["last_follow_time"])
            if moved is not None and (before is None or moved > before):
                hinted[match["id"]] = moved
            differs = match["gone_at"] is not None or any(
                _differs(match[name], merged[name]) for name in (*_IDENTITY, *_DESCRIPTIVE)
            )
            if differs or match["first_seen_at"] is None:
                changes.append(
                    merged
                    | {"ref": match["id"], "last_seen_at": now, "gone_at": None, "updated_at": now}
                )
                counts.updated += 1
            else:
                seen_refs.append(match["id"])
                counts.unchanged += 1
        if inserts:
            # first_seen_at is set only here: a customer first imported and then discovered
            # keeps NULL there until this update (below) sets it.
            await conn.exec_driver_sql(self._insert_sql, inserts)
        if changes:
            await conn.execute(
                self._update_stmt.values(
                    first_seen_at=func.coalesce(_CUSTOMERS.c.first_seen_at, now)
                ),
                changes,
            )
        if seen_refs:
            await conn.execute(
                update(_CUSTOMERS).where(_CUSTOMERS.c.id.in_(seen_refs)).values(last_seen_at=now)
            )
        return hinted

    async def _make_due(self, conn: AsyncConnection, hinted: dict[int, datetime]) -> int:
        """Customers whose follow-up time moved past their last file sync are due now."""
        state = CustomerSyncState.__table__
        rows = await conn.execute(
            select(state.c.customer_ref, state.c.last_success_at).where(
                state.c.customer_ref.in_(list(hinted))
            )
        )
        last_sync = {row.customer_ref: _as_utc(row.last_success_at) for row in rows}
        due = [
            ref
            for ref, moved in hinted.items()
            if (synced := last_sync.get(ref)) is None or moved > synced
        ]
        if not due:
            return 0
        result = await conn.execute(
            update(CustomerSchedule)
            .where(CustomerSchedule.customer_ref.in_(due))
            .values(next_due_at=self._dialect.now())
        )
        return result.rowcount

    async def _set_aside(
        self,
        conn: AsyncConnection,
        rejected: Sequence[RejectedCustomer],
        run_id: int,
        now: datetime,
    ) -> None:
        rows = {}
        for item in rejected:
            digest = payload_digest(item.payload)
            rows[digest] = {
                "run_id": run_id,
                "reason": item.reason,
                "payload": item.payload.encode("utf-8", "backslashreplace").decode(),
                "payload_sha256": digest,
                "first_rejected_at": now,
                "last_rejected_at": now,
            }
        await conn.execute(self._set_aside_stmt, list(rows.values()))


class _NewCustomerRow:
    """Turns a discovered customer into the insert's positional parameters, as the driver
    takes them: one C-level attribute fetch, then the columns that need converting."""

    def __init__(self, order: Sequence[str], stamp: Callable[[datetime], Any]) -> None:
        self.stamp = stamp
        item_fields = {*_IDENTITY, *_DESCRIPTIVE}
        # Columns that are not DiscoveredCustomer attributes fetch a stand-in, replaced below.
        self._fetch = attrgetter(*(n if n in item_fields else "raw" for n in order))
        self._times = [order.index(name) for name in _TIMES]
        self._raw = order.index("raw")
        self._gone = order.index("gone_at")
        self._stamped = [order.index(name) for name in _STAMPED]

    def __call__(self, customer: DiscoveredCustomer, now: Any) -> tuple[Any, ...]:
        values = list(self._fetch(customer))
        for index in self._times:
            if values[index] is not None:
                values[index] = self.stamp(values[index])
        values[self._raw] = encode_json(customer.raw)
        values[self._gone] = None
        for index in self._stamped:
            values[index] = now
        return tuple(values)


def _without_shared_keys(
    customers: Sequence[DiscoveredCustomer],
) -> list[list[DiscoveredCustomer]]:
    """The customers in rounds, each matched against the table as the rounds before it left
    it. An identity holds the customer_id when there is one, so two items of one batch can
    share only an external_user_id (two spellings of one customer, or one WeCom id claimed
    twice): the later one goes in a later round, so it meets the earlier as a stored row, as it
    would have on a page of its own. Nearly every batch is one round. An identity read twice
    keeps its first place and its last item."""
    rounds: list[list[DiscoveredCustomer]] = []
    round_of: dict[str, int] = {}  # external_user_id -> the last round that holds it
    for customer in {c.identity: c for c in customers}.values():
        external = customer.external_user_id
        index = round_of[external] + 1 if external in round_of else 0
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(customer)
        if external is not None:
            round_of[external] = index
    return rounds


def _fields(customer: DiscoveredCustomer) -> dict[str, Any]:
    return {name: getattr(customer, name) for name in (*_IDENTITY, *_DESCRIPTIVE)}


def _differs(stored: Any, given: Any) -> bool:
    if isinstance(stored, datetime) or isinstance(given, datetime):
        return _as_utc(stored) != _as_utc(given)
    return bool(stored != given)


def _identity_clash(
    customer: DiscoveredCustomer,
    match: dict[str, Any] | None,
    by_ext: dict[str, dict[str, Any]],
) -> str:
    """Why this item cannot be merged into ``match`` ('' when it can): one customer never
    takes another's WeCom id, and a known id is never replaced by a different one."""
    if match is None:
        return ""
    external = customer.external_user_id
    if external is not None:
        owner = by_ext.get(external)
        if owner is not None and owner["id"] != match["id"]:
            return (
                f"customer {customer.customer_id}: external_user_id {external} belongs to "
                f"customer_id {owner['customer_id']}"
            )
        if match["external_user_id"] not in (None, external):
            return (
                f"customer {customer.customer_id}: already has external_user_id "
                f"{match['external_user_id']}, the search says {external}"
            )
    if customer.customer_id is not None and match["customer_id"] not in (
        None,
        customer.customer_id,
    ):
        return (
            f"external_user_id {match['external_user_id']} belongs to customer_id "
            f"{match['customer_id']}, the search says {customer.customer_id}"
        )
    return ""


def _same_or_null(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def _dead_here(holder: Holder, me: Owner, alive: Callable[[int], bool]) -> bool:
    """The holder is a process of this host (and pid space) that no longer exists."""
    return (
        holder.pid is not None
        and holder.hostname == me.hostname
        and holder.space == me.space
        and holder.pid != me.pid
        and not alive(holder.pid)
    )


def _walk_text(walk: DiscoveryWalk) -> str:
    # Written with every page, and it holds the current window's customers seen so far.
    return encode_json(walk.to_json())


def _gap_row(gap: Gap, run_id: int, now: datetime) -> dict[str, Any]:
    window = gap.window
    return {
        "run_id": run_id,
        "window_start": None if window is None else _instant(window.start),
        "window_end": None if window is None else _instant(window.end),
        "total_count": gap.total_count,
        "fetched": gap.fetched,
        "reason": gap.reason.value,
        "detail": gap.describe(),
        "recorded_at": now,
    }


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return None
