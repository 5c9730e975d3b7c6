"""The ``sync_runs`` table: a row per pass, from start to its end (or abandonment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.domain.tally import RUN_COUNTERS, RunStatus
from sync.mirror.dialect import Dialect
from sync.mirror.models import CustomerSchedule, SyncRun, SyncWorker, utc_now
from sync.mirror.owners import (
    Owner,
    RunOwnerFacts,
    abandoned_reason,
    current_owner,
    is_local,
    pid_exists,
)


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
        sync/mirror/owners.py), and free the leases and the fleet row of a worker whose process
        is seen to be gone; returns the closed runs' ids with the reason recorded."""
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
        facts = [RunOwnerFacts(*row) for row in rows]
        closed = {
            run.run_id: reason
            for run in facts
            if (reason := abandoned_reason(run, me, now, lease_ttl, alive))
        }
        # A worker whose process is seen to be gone holds its leases and its place in the rate
        # share in vain: it leaves them now, sparing its customers the wait for SYNC_LEASE_TTL
        # (a killed `run` would otherwise hold up the next one). Only when its sync_workers row
        # is that very process (a restarted daemon keeps its SYNC_WORKER_ID), and not for a
        # worker judged by its heartbeat alone: it may still be at work.
        dead = [
            run
            for run in facts
            if run.run_id in closed and run.worker_id is not None and is_local(run, me)
        ]
        if closed:
            async with self._engine.begin() as conn:
                for run in dead:
                    gone = await conn.execute(
                        delete(SyncWorker).where(
                            SyncWorker.worker_id == run.worker_id,
                            SyncWorker.hostname == run.hostname,
                            SyncWorker.pid == run.pid,
                        )
                    )
                    if gone.rowcount:
                        await conn.execute(
                            update(CustomerSchedule)
                            .where(CustomerSchedule.lease_owner == run.worker_id)
                            .values(lease_owner=None, lease_expires_at=None)
                        )
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
