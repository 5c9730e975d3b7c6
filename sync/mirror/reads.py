"""Reading the mirror for people: per-customer status, reporting views and totals. Only reads,
so a read-only database role can run every command built on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.domain.customers import customer_label
from sync.mirror import reports
from sync.mirror.listings import (
    customer_count_query,
    customers_query,
    state_counts_query,
    status_query,
)
from sync.mirror.models import Customer, CustomerFile, CustomerSyncState, RejectedRecordRow


class MirrorReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def customers_page(self, limit: int | None) -> tuple[list[dict[str, Any]], int]:
        """``customers list``: the first ``limit`` customers (all when None) in row order with
        their live file counts, and how many customers there are."""
        async with self._engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(customers_query(limit))).mappings()]
            total = await conn.scalar(customer_count_query()) or 0
        return rows, total

    async def customer_status(
        self, max_staleness_s: int, limit: int | None = None, refs: Sequence[int] | None = None
    ) -> list[dict[str, Any]]:
        """``status``: customers worst state first (see listings.status_query)."""
        query = status_query(max_staleness_s, limit, refs)
        async with self._engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        for row in rows:
            row["customer"] = customer_label(row["customer_id"], row["external_user_id"])
        return rows

    async def state_counts(self, max_staleness_s: int) -> dict[str, int]:
        """Customers per state word (states without customers are absent)."""
        async with self._engine.connect() as conn:
            result = await conn.execute(state_counts_query(max_staleness_s))
            return {state: count for state, count in result.tuples()}

    async def report_rows(self, query: Select[Any]) -> list[dict[str, Any]]:
        """The rows of a reporting view query (built by sync/mirror/reports.py)."""
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def report_page(
        self, report: reports.Report, query: Select[Any], limit: int | None
    ) -> tuple[list[dict[str, Any]], int]:
        """The report's first ``limit`` rows in its order (all when None), and how many rows
        it has. The database applies the limit where the order allows (reports.limited_query)."""
        limited = reports.limited_query(report, query, limit) if limit is not None else None
        if limited is None:
            rows = [dict(r) for r in reports.ordered(report, await self.report_rows(query))]
            return (rows if limit is None else rows[:limit]), len(rows)
        async with self._engine.connect() as conn:
            total = await conn.scalar(reports.count_query(query)) or 0
        return await self.report_rows(limited), total

    async def totals(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
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

    async def never_any_file(self) -> int:
        """Customers checked successfully whose list has never held a file: a customer without
        files and an id Tanmarket does not know answer alike (an empty list)."""
        state = CustomerSyncState
        query = select(func.count()).where(
            state.last_success_at.is_not(None),
            state.high_water_id.is_(None),
            state.pass_started_at.is_(None),
        )
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def file_ids(self) -> set[int]:
        """The id of every mirrored record, deleted ones included."""
        async with self._engine.connect() as conn:
            return set((await conn.execute(select(CustomerFile.id))).scalars())

    async def files_by_type(self) -> list[tuple[str | None, int, int | None]]:
        """(file type, files, total bytes) for every type, most files first."""
        query = (
            select(CustomerFile.file_type, func.count(), func.sum(CustomerFile.file_size_bytes))
            .group_by(CustomerFile.file_type)
            .order_by(func.count().desc())
        )
        async with self._engine.connect() as conn:
            return [(row[0], row[1], row[2]) for row in await conn.execute(query)]

    async def newest_files(self, limit: int) -> list[dict[str, Any]]:
        query = (
            select(
                CustomerFile.create_time,
                CustomerFile.customer_id,
                CustomerFile.file_name,
                CustomerFile.file_size_text,
                CustomerFile.author_name,
            )
            .order_by(CustomerFile.create_time.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]
