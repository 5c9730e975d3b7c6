"""Page writes: a page's rows, its rejected items and the customer's cursor in one transaction,
so the mirror and the cursor can never disagree. Pages that workers hand in at the same moment
share that transaction (group commit, ``sync/mirror/batching.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Table,
    any_,
    bindparam,
    column,
    func,
    null,
    select,
    table,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.domain.customers import CustomerKey
from sync.domain.deletion_guard import DeletionGuard, judge_deletions
from sync.domain.jsoncodec import encode_json
from sync.domain.pager import CustomerCursor, VanishedCheck
from sync.domain.records import FileRecord, RejectedRecord
from sync.domain.tally import PageCounts
from sync.mirror.batching import Batcher
from sync.mirror.dialect import Dialect
from sync.mirror.driver_values import postgres_stamp, sqlite_stamp
from sync.mirror.leases import LeaseFence, check_leases
from sync.mirror.models import (
    Customer,
    CustomerFile,
    CustomerSyncState,
    RejectedRecordRow,
    utc_now,
)

# FileRecord's fields are named as the columns they fill; an upsert refreshes all but the key.
_RECORD_COLUMNS = FileRecord._fields
_UPSERT_COLUMNS = (*_RECORD_COLUMNS, "source_customer_id", "first_seen_at", "last_seen_at")
_REFRESHED_COLUMNS = (*(name for name in _RECORD_COLUMNS if name != "id"), "source_customer_id")
CURSOR_COLUMNS = (
    "high_water_id",
    "pass_cursor_id",
    "pass_top_id",
    "pass_floor_id",
    "pass_started_at",
    "pass_full",
)


@dataclass(frozen=True, slots=True)
class _PageWrite:
    """What PageWriter.save was handed, waiting for its transaction."""

    customer: CustomerKey
    records: Sequence[FileRecord]
    rejected: Sequence[RejectedRecord]
    cursor: CustomerCursor
    run_id: int | None
    completed: bool
    vanished: VanishedCheck | None
    fence: LeaseFence | None
    guard: DeletionGuard | None


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


class PageWriter:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect
        insert = dialect.insert
        self._insert = insert
        # The per-page statements never change: build them once, not on every page.
        files = CustomerFile.__table__
        # One parameter, not a list of them: the statement's text is the same for every batch
        # size, so it is compiled and prepared once (asyncpg; SQLite's statement cache). On
        # SQLite the parameter is the ids as a JSON array, which costs half the time of an
        # expanding IN of 150 ids (BENCHMARKS.md).
        ids_match = (
            files.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger)))
            if dialect.postgres
            else files.c.id.in_(
                select(column("value")).select_from(func.json_each(bindparam("ids")))
            )
        )
        self._bind_ids: Callable[[list[int]], Any] = (
            (lambda ids: ids) if dialect.postgres else _encode_ids
        )
        self._known_files_stmt = select(files.c.id, files.c.raw, files.c.deleted_at).where(
            ids_match
        )
        # The hottest statement runs as driver SQL with rows already in the driver's form:
        # SQLAlchemy's per-row parameter building and type processing cost more than the
        # database's own work on a page (see BENCHMARKS.md).
        compiled = _refreshing(insert(files)).compile(
            dialect=engine.dialect, column_keys=[*_UPSERT_COLUMNS]
        )
        order = compiled.positiontup
        if order is None or set(order) != set(_UPSERT_COLUMNS):
            raise RuntimeError("the files upsert must bind exactly the file columns")
        self._files_upsert_sql = str(compiled)
        self._driver_row = _DriverRow(order, postgres_stamp if dialect.postgres else sqlite_stamp)
        self._copy = _StagedCopy(order, engine) if dialect.postgres else None
        self._state_stmts: dict[tuple[str, ...], Any] = {}
        self._pages: Batcher[_PageWrite, PageCounts] = Batcher(self._write_pages, _page_fits)
        self._cursors: Batcher[int, tuple[CustomerCursor, bool]] = Batcher(
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

    async def load_cursor(self, customer_ref: int) -> CustomerCursor:
        """The customer's cursor (read together with other workers' at the same moment)."""
        return (await self._cursors.submit(customer_ref))[0]

    async def load_cursor_and_history(self, customer_ref: int) -> tuple[CustomerCursor, bool]:
        """The customer's cursor, and whether any pass of it ever completed."""
        return await self._cursors.submit(customer_ref)

    async def _load_cursors(self, refs: Sequence[int]) -> list[tuple[CustomerCursor, bool]]:
        table = CustomerSyncState.__table__
        query = select(
            table.c.customer_ref,
            table.c.last_success_at,
            *(table.c[name] for name in CURSOR_COLUMNS),
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.where(table.c.customer_ref.in_(set(refs))))
            found = {
                row.customer_ref: (
                    CustomerCursor(**{name: getattr(row, name) for name in CURSOR_COLUMNS}),
                    row.last_success_at is not None,
                )
                for row in rows
            }
        return [found.get(ref) or (CustomerCursor(), False) for ref in refs]

    async def save(
        self,
        customer: CustomerKey,
        records: Sequence[FileRecord],
        rejected: Sequence[RejectedRecord],
        cursor: CustomerCursor,
        *,
        run_id: int | None,
        completed: bool,
        vanished: VanishedCheck | None = None,
        fence: LeaseFence | None = None,
        guard: DeletionGuard | None = None,
    ) -> PageCounts:
        """One page in one transaction: its rows, its rejected items and the new cursor.

        Pages that other workers hand in at the same moment share that transaction (group
        commit, sync/mirror/batching.py): each page still lands whole with its cursor or not at
        all, and a page that fails is written again on its own so it fails alone.
        """
        page = _PageWrite(
            customer, records, rejected, cursor, run_id, completed, vanished, fence, guard
        )
        return await self._pages.submit(page)

    async def _write_pages(self, pages: Sequence[_PageWrite]) -> list[PageCounts]:
        now = utc_now()
        counts = [PageCounts() for _ in pages]
        async with self._engine.begin() as conn:
            fences = [page.fence for page in pages if page.fence is not None]
            await check_leases(conn, self._dialect, fences)
            await self._upsert_files(conn, pages, now, counts)
            for page, page_counts in zip(pages, counts, strict=True):
                if page.rejected:
                    await self._set_aside(conn, page.customer.ref, page.rejected, page.run_id, now)
                    page_counts.rejected = len(page.rejected)
                if page.vanished is not None:
                    page_counts.deleted = await self._mark_vanished(conn, page, now)
            await self._write_states(conn, pages, now)
        return counts

    async def _mark_vanished(self, conn: AsyncConnection, page: _PageWrite, now: datetime) -> int:
        """A full reconcile's end: mark the files it did not see deleted, unless the guard
        holds them back; the customer's hold records why (and is cleared by a reconcile the
        guard lets through)."""
        assert page.vanished is not None
        ref = page.customer.ref
        live = (CustomerFile.source_customer_id == ref) & CustomerFile.deleted_at.is_(None)
        unseen = live & (CustomerFile.last_seen_at < page.vanished.seen_since)
        hold_reason = None
        if page.guard is not None:
            counts = select(func.count().filter(unseen), func.count()).where(live)
            vanishing, live_files = (await conn.execute(counts)).one()
            hold_reason = judge_deletions(page.guard, live_files, vanishing).hold_reason
        held = {"held_at": now, "held_reason": hold_reason} if hold_reason else {}
        await conn.execute(
            update(Customer)
            .where(Customer.id == ref)
            .values(held or {"held_at": None, "held_reason": None})
        )
        if hold_reason is not None:
            return 0
        result = await conn.execute(update(CustomerFile).where(unseen).values(deleted_at=now))
        return int(result.rowcount)

    async def record_failure(self, customer_ref: int, reason: str) -> None:
        """The pass for this customer stopped; its cursor stays where the last page left it."""
        now = utc_now()
        async with self._engine.begin() as conn:
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
        bound = {"ids": self._bind_ids(ids)}
        known = {row.id: row for row in await conn.execute(self._known_files_stmt, bound)}
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
        if self._copy is not None and len(rows) >= COPY_MIN_ROWS:
            await self._copy.upsert(conn, rows)
        else:
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


def _refreshing(upsert: Any) -> Any:
    """The files upsert's conflict clause: a known record takes every column but its key and
    its first sighting, and is no longer deleted."""
    files = CustomerFile.__table__
    return upsert.on_conflict_do_update(
        index_elements=[files.c.id],
        set_={name: upsert.excluded[name] for name in _REFRESHED_COLUMNS}
        | {"last_seen_at": upsert.excluded.last_seen_at, "deleted_at": null()},
    )


# PostgreSQL batches of at least this many rows are upserted by COPY into a staging table and
# one merge from it: measured against the prepared upsert run once per row, COPY took about
# 30% less time at 2,000 rows and 18% less at 500, broke even near 100 and lost below.
COPY_MIN_ROWS = 200
_STAGE = "customer_files_stage"


class _StagedCopy:
    """The large-batch upsert on PostgreSQL, inside the page transaction: ``COPY`` the rows
    into a temporary table that empties itself at commit, then one ``INSERT ... SELECT ... ON
    CONFLICT`` from it. The table is made on first use in each session (so in the transaction
    too, and a rolled-back one takes it away with everything else)."""

    def __init__(self, order: Sequence[str], engine: AsyncEngine) -> None:
        files = cast(Table, CustomerFile.__table__)
        self._columns = list(order)
        names = ", ".join(self._columns)
        # Only the model's own table and column names go into this text.
        self._create_sql = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS "  # noqa: S608
            f"AS SELECT {names} FROM {files.name} WITH NO DATA"
        )
        stage = table(_STAGE, *(column(name) for name in self._columns))
        merge = _refreshing(postgresql.insert(files).from_select(self._columns, select(*stage.c)))
        self._merge_sql = str(merge.compile(dialect=engine.dialect))

    async def upsert(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        # The transaction is already open on the driver: the id look-up ran in it first.
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute(self._create_sql)
        await driver.copy_records_to_table(_STAGE, records=rows, columns=self._columns)
        await conn.exec_driver_sql(self._merge_sql)


def _encode_ids(ids: list[int]) -> str:
    """Record ids as the JSON array SQLite's ``json_each`` reads."""
    return orjson.dumps(ids).decode()


def _cursor_values(cursor: CustomerCursor) -> dict[str, Any]:
    return {name: getattr(cursor, name) for name in CURSOR_COLUMNS}


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
