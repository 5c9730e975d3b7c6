"""Every database operation of the engine and the CLI, behind one narrow layer.

The engine hands whole pages here; ``save_page`` writes a page's rows, its rejected items and the
customer's cursor in one transaction, so the mirror and the cursor can never disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Select, bindparam, func, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.batching import Batcher
from sync.customers_file import CustomerRow, LineProblem
from sync.jsoncodec import encode_json
from sync.models import (
    Customer,
    CustomerFile,
    CustomerSyncState,
    RejectedRecordRow,
    SyncRun,
    SyncWorker,
    utc_now,
)
from sync.owners import (
    ABANDONED,
    Owner,
    RunOwnerFacts,
    abandoned_reason,
    current_owner,
    pid_exists,
)
from sync.pager import CustomerCursor, VanishedCheck
from sync.records import FileRecord, RejectedRecord, is_ascii_digits

# FileRecord's fields are named as the columns they fill; an upsert refreshes all but the key.
_RECORD_COLUMNS = tuple(f.name for f in dataclasses.fields(FileRecord))
_UPSERT_COLUMNS = (*_RECORD_COLUMNS, "source_customer_id", "first_seen_at", "last_seen_at")
_REFRESHED_COLUMNS = (*(name for name in _RECORD_COLUMNS if name != "id"), "source_customer_id")
_CURSOR_COLUMNS = (
    "high_water_id",
    "pass_cursor_id",
    "pass_top_id",
    "pass_floor_id",
    "pass_started_at",
    "pass_full",
)


# A check that runs first inside a page transaction and raises to roll it back (the daemon's
# lease check: a worker that lost a customer must not write its pages).
Fence = Callable[[AsyncConnection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """A customer as the engine needs it: the mirror's row id and what identifies it upstream."""

    ref: int
    customer_id: int | None
    external_user_id: str | None
    user_id: str | None
    sales_id: int | None

    @property
    def label(self) -> str:
        return (
            str(self.customer_id)
            if self.customer_id is not None
            else f"ext:{self.external_user_id}"
        )


@dataclass(slots=True)
class PageCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class _PageWrite:
    """What save_page was handed, waiting for its transaction."""

    customer: CustomerKey
    records: Sequence[FileRecord]
    rejected: Sequence[RejectedRecord]
    cursor: CustomerCursor
    run_id: int | None
    completed: bool
    vanished: VanishedCheck | None
    fence: Fence | None


# How much one group transaction may carry: short enough to keep any page's wait small and
# the id look-up well under the databases' bound-parameter limits.
_BATCH_PAGES = 64
_BATCH_RECORDS = 2_000
_BATCH_CURSORS = 500


def _page_fits(batch: Sequence[_PageWrite], page: _PageWrite) -> bool:
    """A page joins a batch unless that makes it too big, or it shares a customer or a record
    id with a page already in it (one statement must not touch a row twice, and each page's
    counts are taken against the rows as they were before the batch)."""
    if len(batch) >= _BATCH_PAGES:
        return False
    if sum(len(p.records) for p in batch) + len(page.records) > _BATCH_RECORDS:
        return False
    if any(p.customer.ref == page.customer.ref for p in batch):
        return False
    ids = {r.id for r in page.records}
    return not any(r.id in ids for p in batch for r in p.records)


@dataclass(frozen=True, slots=True)
class ImportCounts:
    added: int
    updated: int
    unchanged: int
    conflicts: list[LineProblem]


class MirrorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = insert
        self._postgres = engine.dialect.name == "postgresql"
        # The per-page statements never change: build them once, not on every page.
        files = CustomerFile.__table__
        self._known_files_stmt = select(files.c.id, files.c.raw, files.c.deleted_at).where(
            files.c.id.in_(bindparam("ids", expanding=True))
        )
        upsert = insert(files)
        files_upsert = upsert.on_conflict_do_update(
            index_elements=[files.c.id],
            set_={name: upsert.excluded[name] for name in _REFRESHED_COLUMNS}
            | {"last_seen_at": upsert.excluded.last_seen_at, "deleted_at": null()},
        )
        # The hottest statement runs as driver SQL with rows already in the driver's form:
        # SQLAlchemy's per-row parameter building and type processing cost more than the
        # database's own work on a page (see BENCHMARKS.md).
        compiled = files_upsert.compile(dialect=engine.dialect, column_keys=[*_UPSERT_COLUMNS])
        assert compiled.positiontup is not None and set(compiled.positiontup) == set(
            _UPSERT_COLUMNS
        ), "the upsert must bind exactly the file columns"
        self._files_upsert_sql = str(compiled)
        stamp = _sqlite_stamp if engine.dialect.name == "sqlite" else _postgres_stamp
        self._driver_row = _DriverRow(compiled.positiontup, stamp)
        self._state_stmts: dict[tuple[str, ...], Any] = {}
        self._pages: Batcher[_PageWrite, PageCounts] = Batcher(self._write_pages, _page_fits)
        self._cursors: Batcher[int, CustomerCursor] = Batcher(
            self._load_cursors, lambda batch, _ref: len(batch) < _BATCH_CURSORS
        )
        rejected = RejectedRecordRow.__table__
        set_aside = insert(rejected)
        self._set_aside_stmt = set_aside.on_conflict_do_update(
            index_elements=[rejected.c.customer_ref, rejected.c.payload_sha256],
            set_={
                "last_rejected_at": set_aside.excluded.last_rejected_at,
                "run_id": set_aside.excluded.run_id,
                "reason": set_aside.excluded.reason,
            },
        )

    # -- customers -------------------------------------------------------------------------

    async def import_customers(self, rows: Sequence[CustomerRow]) -> ImportCounts:
        """Upsert customers, matched by customer_id, else by external_user_id. Idempotent."""
        added = updated = unchanged = 0
        conflicts: list[LineProblem] = []
        async with self.engine.begin() as conn:
            existing = (await conn.execute(select(Customer.__table__))).mappings().all()
            by_id = {r["customer_id"]: dict(r) for r in existing if r["customer_id"] is not None}
            by_ext = {
                r["external_user_id"]: dict(r)
                for r in existing
                if r["external_user_id"] is not None
            }
            now = utc_now()
            for row in rows:
                match = by_id.get(row.customer_id) if row.customer_id is not None else None
                if match is None and row.external_user_id is not None:
                    match = by_ext.get(row.external_user_id)
                clash = _identity_clash(row, match, by_ext)
                if clash:
                    conflicts.append(LineProblem(row.line, clash))
                    continue
                given = {k: v for k, v in _customer_fields(row).items() if v is not None}
                if match is None:
                    values = {**_customer_fields(row), "created_at": now, "updated_at": now}
                    result = await conn.execute(
                        Customer.__table__.insert().values(values).returning(Customer.id)
                    )
                    record = {**values, "id": result.scalar_one()}
                    added += 1
                elif any(match[k] != v for k, v in given.items()):
                    await conn.execute(
                        update(Customer)
                        .where(Customer.id == match["id"])
                        .values(**given, updated_at=now)
                    )
                    record = {**match, **given}
                    updated += 1
                else:
                    unchanged += 1
                    continue
                if record["customer_id"] is not None:
                    by_id[record["customer_id"]] = record
                if record["external_user_id"] is not None:
                    by_ext[record["external_user_id"]] = record
        return ImportCounts(added, updated, unchanged, conflicts)

    async def customers(self, selectors: Sequence[str] = ()) -> list[CustomerKey]:
        """All customers in id order, or those whose customer_id or external_user_id is named."""
        # Plain columns, not ORM entities: 100,000 customers as entities cost hundreds of MB.
        columns = Customer.__table__.c
        query = select(
            columns.id,
            columns.customer_id,
            columns.external_user_id,
            columns.user_id,
            columns.sales_id,
        ).order_by(columns.id)
        if selectors:
            numeric = [int(s) for s in selectors if is_ascii_digits(s) and len(s) <= 19]
            query = query.where(
                or_(Customer.customer_id.in_(numeric), Customer.external_user_id.in_(selectors))
            )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            CustomerKey(r.id, r.customer_id, r.external_user_id, r.user_id, r.sales_id)
            for r in rows
        ]

    # -- sync state ------------------------------------------------------------------------

    async def load_cursor(self, customer_ref: int) -> CustomerCursor:
        """The customer's cursor (read together with other workers' at the same moment)."""
        return await self._cursors.submit(customer_ref)

    async def _load_cursors(self, refs: Sequence[int]) -> list[CustomerCursor]:
        table = CustomerSyncState.__table__
        query = select(table.c.customer_ref, *(table.c[name] for name in _CURSOR_COLUMNS))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.where(table.c.customer_ref.in_(set(refs))))
            found = {
                row.customer_ref: CustomerCursor(
                    **{name: getattr(row, name) for name in _CURSOR_COLUMNS}
                )
                for row in rows
            }
        return [found.get(ref) or CustomerCursor() for ref in refs]

    async def save_page(
        self,
        customer: CustomerKey,
        records: Sequence[FileRecord],
        rejected: Sequence[RejectedRecord],
        cursor: CustomerCursor,
        *,
        run_id: int | None,
        completed: bool,
        vanished: VanishedCheck | None = None,
        fence: Fence | None = None,
    ) -> PageCounts:
        """One page in one transaction: its rows, its rejected items and the new cursor.

        Pages that other workers hand in at the same moment share that transaction (group
        commit, sync/batching.py): each page still lands whole with its cursor or not at
        all, and a page that fails is written again on its own so it fails alone.
        """
        page = _PageWrite(customer, records, rejected, cursor, run_id, completed, vanished, fence)
        return await self._pages.submit(page)

    async def _write_pages(self, pages: Sequence[_PageWrite]) -> list[PageCounts]:
        now = utc_now()
        counts = [PageCounts() for _ in pages]
        async with self.engine.begin() as conn:
            for page in pages:
                if page.fence is not None:
                    await page.fence(conn)
            await self._upsert_files(conn, pages, now, counts)
            for page, page_counts in zip(pages, counts, strict=True):
                if page.rejected:
                    await self._set_aside(conn, page.customer.ref, page.rejected, page.run_id, now)
                    page_counts.rejected = len(page.rejected)
                if page.vanished is not None:
                    result = await conn.execute(
                        update(CustomerFile)
                        .where(
                            CustomerFile.source_customer_id == page.customer.ref,
                            CustomerFile.last_seen_at < page.vanished.seen_since,
                            CustomerFile.deleted_at.is_(None),
                        )
                        .values(deleted_at=now)
                    )
                    page_counts.deleted = result.rowcount
            await self._write_states(conn, pages, now)
        return counts

    async def record_failure(self, customer_ref: int, reason: str) -> None:
        """The pass for this customer stopped; its cursor stays where the last page left it."""
        now = utc_now()
        async with self.engine.begin() as conn:
            table = CustomerSyncState.__table__
            stmt = self._insert(table).values(
                customer_ref=customer_ref,
                pass_full=False,
                last_attempt_at=now,
                last_error=reason,
                last_error_at=now,
                consecutive_failures=1,
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[table.c.customer_ref],
                    set_={
                        "last_attempt_at": now,
                        "last_error": reason,
                        "last_error_at": now,
                        "consecutive_failures": table.c.consecutive_failures + 1,
                    },
                )
            )

    async def _upsert_files(
        self,
        conn: AsyncConnection,
        pages: Sequence[_PageWrite],
        now: datetime,
        counts: Sequence[PageCounts],
    ) -> None:
        # A server that repeats an id within a page would make one statement touch a row twice.
        # Pages of one batch never share an id (_page_fits), so one look-up serves them all.
        uniques = [list({r.id: r for r in reversed(page.records)}.values()) for page in pages]
        ids = [r.id for unique in uniques for r in unique]
        if not ids:
            return
        known = {row.id: row for row in await conn.execute(self._known_files_stmt, {"ids": ids})}
        to_row = self._driver_row
        now_value = to_row.stamp(now)
        rows = []
        for page, unique, page_counts in zip(pages, uniques, counts, strict=True):
            for record in unique:
                before = known.get(record.id)
                if before is None:
                    page_counts.inserted += 1
                elif before.raw != record.raw or before.deleted_at is not None:
                    page_counts.updated += 1
                else:
                    page_counts.unchanged += 1
                rows.append(to_row(record, page.customer.ref, now_value))
        await conn.exec_driver_sql(self._files_upsert_sql, rows)

    async def _set_aside(
        self,
        conn: AsyncConnection,
        customer_ref: int,
        rejected: Sequence[RejectedRecord],
        run_id: int | None,
        now: datetime,
    ) -> None:
        rows = {}
        for item in rejected:
            digest = hashlib.sha256(item.payload.encode("utf-8", "surrogatepass")).hexdigest()
            rows[digest] = {
                "customer_ref": customer_ref,
                "run_id": run_id,
                "record_id": item.record_id,
                "reason": item.reason,
                "payload": item.payload.encode("utf-8", "backslashreplace").decode(),
                "payload_sha256": digest,
                "first_rejected_at": now,
                "last_rejected_at": now,
            }
        await conn.execute(self._set_aside_stmt, list(rows.values()))

    async def _write_states(
        self, conn: AsyncConnection, pages: Sequence[_PageWrite], now: datetime
    ) -> None:
        """Every page's cursor and outcome; one statement per shape of row (done or not)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for page in pages:
            values: dict[str, Any] = _cursor_values(page.cursor) | {"last_attempt_at": now}
            if page.completed:
                values |= {
                    "last_success_at": now,
                    "last_error": None,
                    "last_error_at": None,
                    "consecutive_failures": 0,
                }
            row = {"consecutive_failures": 0, **values, "customer_ref": page.customer.ref}
            groups.setdefault(tuple(values), []).append(row)
        for refreshed, rows in groups.items():
            await conn.execute(self._state_upsert(refreshed), rows)

    def _state_upsert(self, refreshed: tuple[str, ...]) -> Any:
        stmt = self._state_stmts.get(refreshed)
        if stmt is None:
            table = CustomerSyncState.__table__
            insert = self._insert(table)
            stmt = insert.on_conflict_do_update(
                index_elements=[table.c.customer_ref],
                set_={name: insert.excluded[name] for name in refreshed},
            )
            self._state_stmts[refreshed] = stmt
        return stmt

    # -- runs ------------------------------------------------------------------------------

    async def start_run(
        self,
        mode: str,
        customers_total: int,
        *,
        worker_id: str | None = None,
        owner: Owner | None = None,
    ) -> int:
        owner = owner or current_owner()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                SyncRun.__table__.insert()
                .values(
                    mode=mode,
                    status="running",
                    started_at=utc_now(),
                    customers_total=customers_total,
                    worker_id=worker_id,
                    hostname=owner.hostname,
                    pid=owner.pid,
                    process_space=owner.space,
                    **dict.fromkeys(_RUN_COUNTERS, 0),
                )
                .returning(SyncRun.id)
            )
            return result.scalar_one()

    async def finish_run(
        self, run_id: int, status: str, totals: dict[str, int], summary: str | None
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id)
                .values(status=status, finished_at=utc_now(), error_summary=summary, **totals)
            )

    async def close_abandoned_runs(
        self,
        lease_ttl: float,
        *,
        me: Owner | None = None,
        alive: Callable[[int], bool] = pid_exists,
    ) -> dict[int, str]:
        """Mark ``abandoned`` the runs still ``running`` whose owner is provably gone (see
        sync/owners.py); returns their ids with the reason recorded."""
        me = me or current_owner()
        query = (
            select(
                SyncRun.id,
                SyncRun.hostname,
                SyncRun.pid,
                SyncRun.process_space,
                SyncRun.worker_id,
                SyncWorker.heartbeat_at,
            )
            .outerjoin(SyncWorker, SyncWorker.worker_id == SyncRun.worker_id)
            .where(SyncRun.status == "running")
        )
        # Read first, write only when there is something to close: on SQLite a write
        # transaction takes the file's lock, which every pass would otherwise queue on.
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return {}
            # Heartbeats are written with PostgreSQL's clock there, so compare with it.
            now = await conn.scalar(select(func.now())) if self._postgres else utc_now()
        closed = {
            row.id: reason
            for row in rows
            if (reason := abandoned_reason(RunOwnerFacts(*row), me, now, lease_ttl, alive))
        }
        if closed:
            async with self.engine.begin() as conn:
                for run_id, reason in closed.items():
                    # Only if still running: the owner may have finished it meanwhile.
                    await conn.execute(
                        update(SyncRun)
                        .where(SyncRun.id == run_id, SyncRun.status == "running")
                        .values(status=ABANDONED, finished_at=utc_now(), error_summary=reason)
                    )
        return closed

    # -- reading the mirror (status, demo, tests) -----------------------------------------

    async def customer_status(self, limit: int | None = None) -> list[dict[str, Any]]:
        files = (
            select(
                CustomerFile.source_customer_id.label("ref"),
                func.count().label("files"),
                func.max(CustomerFile.create_time).label("newest"),
            )
            .where(CustomerFile.deleted_at.is_(None))
            .group_by(CustomerFile.source_customer_id)
            .subquery()
        )
        query: Select[Any] = (
            select(
                Customer.customer_id,
                Customer.external_user_id,
                func.coalesce(files.c.files, 0).label("files"),
                files.c.newest,
                CustomerSyncState.high_water_id,
                CustomerSyncState.pass_cursor_id,
                CustomerSyncState.last_success_at,
                CustomerSyncState.last_error,
                CustomerSyncState.consecutive_failures,
            )
            .outerjoin(files, files.c.ref == Customer.id)
            .outerjoin(CustomerSyncState, CustomerSyncState.customer_ref == Customer.id)
            .order_by(Customer.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def recent_runs(self, limit: int = 5) -> list[dict[str, Any]]:
        query = select(SyncRun.__table__).order_by(SyncRun.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def report_rows(self, query: Select[Any]) -> list[dict[str, Any]]:
        """The rows of a reporting view query (built by sync/reports.py; it only reads)."""
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def totals(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            live = CustomerFile.deleted_at.is_(None)
            return {
                "customers": await conn.scalar(select(func.count()).select_from(Customer)) or 0,
                "files": await conn.scalar(select(func.count()).where(live)) or 0,
                "deleted": await conn.scalar(
                    select(func.count()).where(CustomerFile.deleted_at.is_not(None))
                )
                or 0,
                "rejected": await conn.scalar(select(func.count()).select_from(RejectedRecordRow))
                or 0,
            }


_RUN_COUNTERS = (
    "customers_ok",
    "customers_failed",
    "records_inserted",
    "records_updated",
    "records_unchanged",
    "records_rejected",
    "records_deleted",
    "requests",
    "retries",
    "errors",
)


def _identity_clash(
    row: CustomerRow, match: dict[str, Any] | None, by_ext: dict[str, dict[str, Any]]
) -> str:
    """Why ``row`` cannot be merged into ``match`` ('' when it can): one customer never takes
    another's WeCom id, and a known id is never silently replaced by a different one."""
    if match is None:
        return ""
    if row.external_user_id is not None:
        owner = by_ext.get(row.external_user_id)
        if owner is not None and owner["id"] != match["id"]:
            return (
                f"external_user_id {row.external_user_id} belongs to customer_id "
                f"{owner['customer_id']}, not {row.customer_id}"
            )
        if match["external_user_id"] not in (None, row.external_user_id):
            return (
                f"customer_id {match['customer_id']} already has external_user_id "
                f"{match['external_user_id']}, not {row.external_user_id}"
            )
    if row.customer_id is not None and match["customer_id"] not in (None, row.customer_id):
        return (
            f"external_user_id {match['external_user_id']} belongs to customer_id "
            f"{match['customer_id']}, not {row.customer_id}"
        )
    return ""


def _customer_fields(row: CustomerRow) -> dict[str, Any]:
    return {
        "customer_id": row.customer_id,
        "external_user_id": row.external_user_id,
        "user_id": row.user_id,
        "sales_id": row.sales_id,
    }


def _cursor_values(cursor: CustomerCursor) -> dict[str, Any]:
    return {name: getattr(cursor, name) for name in _CURSOR_COLUMNS}


class _DriverRow:
    """Turns a FileRecord into the upsert's positional parameters, as the driver takes them.

    Built once per statement: one C-level attribute fetch per row, then the few columns that
    need converting are put in their places (this runs for every record of a sync).
    """

    def __init__(self, order: Sequence[str], stamp: Callable[[datetime], Any]) -> None:
        self.stamp = stamp
        record_fields = set(_RECORD_COLUMNS)
        # Columns that are not FileRecord attributes fetch a stand-in, overwritten below.
        self._fetch = attrgetter(*(name if name in record_fields else "id" for name in order))
        self._create_time = order.index("create_time")
        self._raw = order.index("raw")
        self._customer_ref = order.index("source_customer_id")
        self._seen = (order.index("first_seen_at"), order.index("last_seen_at"))

    def __call__(self, record: FileRecord, customer_ref: int, now: Any) -> tuple[Any, ...]:
        values = list(self._fetch(record))
        created = record.create_time
        values[self._create_time] = None if created is None else self.stamp(created)
        values[self._raw] = encode_json(record.raw)
        values[self._customer_ref] = customer_ref
        first, last = self._seen
        values[first] = values[last] = now
        return tuple(values)


def _sqlite_stamp(value: datetime) -> str:
    # Exactly the text SQLAlchemy stores for UTCDateTime on SQLite (naive UTC, microseconds
    # always written), so comparisons in SQL and reads through the ORM agree with other rows.
    utc = value.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
    )


def _postgres_stamp(value: datetime) -> datetime:
    return value.astimezone(UTC)
