"""Reading the mirror for people: per-customer status, reporting views and totals. Only reads,
so a read-only database role can run every command built on it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.mirror.models import Customer, CustomerFile, CustomerSyncState, RejectedRecordRow


class MirrorReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

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
                Customer.nickname,
                Customer.gone_at,
                func.coalesce(files.c.files, 0).label("files"),
                files.c.newest,
                CustomerSyncState.high_water_id,
                CustomerSyncState.pass_started_at,
                CustomerSyncState.last_success_at,
                CustomerSyncState.last_error,
                CustomerSyncState.consecutive_failures,
            )
            .outerjoin(files, files.c.ref == Customer.id)
            .outerjoin(CustomerSyncState, CustomerSyncState.customer_ref == Customer.id)
            .order_by(Customer.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def report_rows(self, query: Select[Any]) -> list[dict[str, Any]]:
        """The rows of a reporting view query (built by sync/mirror/reports.py)."""
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

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
