"""The ``sync_runs`` table: a row per pass, from start to its end (or abandonment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.domain.tally import RUN_COUNTERS, RunStatus
from sync.mirror.dialect import Dialect
from sync.mirror.models import SyncRun, SyncWorker, utc_now
from sync.mirror.owners import Owner, RunOwnerFacts, abandoned_reason, current_owner, pid_exists


class RunLog:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect

    async def start(
        self,
        mode: str,
        customers_total: int,
        *,
        worker_id: str | None = None,
        owner: Owner | None = None,
    ) -> int:
        owner = owner or current_owner()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert(SyncRun)
                .values(
                    mode=mode,
                    status=RunStatus.RUNNING.value,
                    started_at=utc_now(),
                    customers_total=customers_total,
                    worker_id=worker_id,
                    hostname=owner.hostname,
                    pid=owner.pid,
                    process_space=owner.space,
                    **dict.fromkeys(RUN_COUNTERS, 0),
                )
                .returning(SyncRun.id)
            )
            return result.scalar_one()

    async def finish(
        self, run_id: int, status: RunStatus, totals: dict[str, int], summary: str | None
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id)
                .values(
                    status=RunStatus(status).value,
                    finished_at=utc_now(),
                    error_summary=summary,
                    **totals,
                )
            )

    async def close_abandoned(
        self,
        lease_ttl: float,
        *,
        me: Owner | None = None,
        alive: Callable[[int], bool] = pid_exists,
    ) -> dict[int, str]:
        """Mark ``abandoned`` the runs still ``running`` whose owner is provably gone (see
        sync/mirror/owners.py); returns their ids with the reason recorded."""
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
            .where(SyncRun.status == RunStatus.RUNNING.value)
        )
        # Read first, write only when there is something to close: on SQLite a write
        # transaction takes the file's lock, which every pass would otherwise queue on.
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return {}
            # Heartbeats are written with PostgreSQL's clock there, so compare with it.
            now = await self._dialect.read_now(conn)
        closed = {
            row.id: reason
            for row in rows
            if (reason := abandoned_reason(RunOwnerFacts(*row), me, now, lease_ttl, alive))
        }
        if closed:
            async with self._engine.begin() as conn:
                for run_id, reason in closed.items():
                    # Only if still running: the owner may have finished it meanwhile.
                    await conn.execute(
                        update(SyncRun)
                        .where(SyncRun.id == run_id, SyncRun.status == "running")
                        .values(
                            status=RunStatus.ABANDONED, finished_at=utc_now(), error_summary=reason
                        )
                    )
        return closed

    async def recent(self, limit: int = 5) -> list[dict[str, Any]]:
        query = select(SyncRun.__table__).order_by(SyncRun.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]
