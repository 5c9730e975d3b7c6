"""What differs between the two databases, decided once per engine: the upsert statement and
whose clock is "now"."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.mirror.models import utc_now


class Dialect:
    def __init__(self, engine: AsyncEngine) -> None:
        self.postgres = engine.dialect.name == "postgresql"
        # Both dialects' inserts have on_conflict_do_update/do_nothing with the same arguments.
        self.insert: Any = postgresql.insert if self.postgres else sqlite.insert

    def now(self, plus_s: float = 0.0) -> Any:
        """'now' for a statement: PostgreSQL's clock there (one clock for every host that
        shares the database), this process's on SQLite (one host only)."""
        if self.postgres:
            return func.now() + timedelta(seconds=plus_s) if plus_s else func.now()
        return utc_now() + timedelta(seconds=plus_s)

    async def plan_each_statement(self, conn: AsyncConnection) -> None:
        """Within a transaction on PostgreSQL: plan its statements with their parameters and the
        tables' current size. asyncpg prepares every statement, and the server may settle on a
        generic plan for good after five runs; a table filled by the same statements (a first
        discovery) was empty then, and its id look-ups would stay full scans while it grows
        (a 100,000-customer discovery spent 150 ms a page in them)."""
        if self.postgres:
            await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")

    async def read_now(self, conn: AsyncConnection) -> datetime:
        """The same clock as ``now()``, read as a value."""
        if self.postgres:
            value = await conn.scalar(select(func.now()))
            if isinstance(value, datetime):
                return value
        return utc_now()
