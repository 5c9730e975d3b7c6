"""Operator controls on one customer: everything the mirror holds about it (``customer
show``), pausing, resetting its cursor, and the audit rows that record who did what."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.domain.customer_state import DOCUMENT_KIND, DOCUMENT_VERSION, cursor_document
from sync.domain.jsoncodec import encode_json
from sync.domain.pager import CustomerCursor
from sync.mirror.dialect import Dialect
from sync.mirror.leases import LeaseFence, check_leases
from sync.mirror.models import (
    Customer,
    CustomerAudit,
    CustomerFile,
    CustomerSchedule,
    CustomerSyncState,
    FileArchiveState,
    RejectedRecordRow,
    utc_now,
)
from sync.mirror.pages import CURSOR_COLUMNS

# Rows of each history a state document carries.
_RECENT = 10


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class CustomerControls:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect

    async def paused_refs(self) -> set[int]:
        async with self._engine.connect() as conn:
            query = select(Customer.id).where(Customer.paused_at.is_not(None))
            return set((await conn.execute(query)).scalars())

    async def document(self, ref: int) -> dict[str, Any]:
        """Everything about one customer, as ``customer show --format json`` prints it."""
        async with self._engine.connect() as conn:
            return await self._document(conn, ref)

    async def _document(self, conn: AsyncConnection, ref: int) -> dict[str, Any]:
        c = (await conn.execute(select(Customer.__table__).where(Customer.id == ref))).one()
        state = (
            await conn.execute(
                select(CustomerSyncState.__table__).where(CustomerSyncState.customer_ref == ref)
            )
        ).first()
        cursor = (
            CustomerCursor(**{name: getattr(state, name) for name in CURSOR_COLUMNS})
            if state is not None
            else CustomerCursor()
        )
        mine = CustomerFile.source_customer_id == ref
        live = CustomerFile.deleted_at.is_(None)
        files = (
            await conn.execute(
                select(
                    func.count().filter(live),
                    func.count().filter(CustomerFile.deleted_at.is_not(None)),
                    func.count().filter(live & CustomerFile.content_sha256.is_not(None)),
                    func.max(CustomerFile.create_time).filter(live),
                ).where(mine)
            )
        ).one()
        failed = await conn.scalar(
            select(func.count())
            .select_from(CustomerFile)
            .join(FileArchiveState, FileArchiveState.file_id == CustomerFile.id)
            .where(
                mine,
                live,
                CustomerFile.content_sha256.is_(None),
                FileArchiveState.last_reason.is_not(None),
            )
        )
        rejected = await conn.execute(
            select(
                RejectedRecordRow.record_id,
                RejectedRecordRow.reason,
                RejectedRecordRow.run_id,
                RejectedRecordRow.last_rejected_at,
            )
            .where(RejectedRecordRow.customer_ref == ref)
            .order_by(RejectedRecordRow.last_rejected_at.desc(), RejectedRecordRow.id.desc())
            .limit(_RECENT)
        )
        audit = await conn.execute(
            select(CustomerAudit.__table__)
            .where(CustomerAudit.customer_ref == ref)
            .order_by(CustomerAudit.id.desc())
            .limit(_RECENT)
        )
        schedule = (
            await conn.execute(
                select(CustomerSchedule.__table__).where(CustomerSchedule.customer_ref == ref)
            )
        ).first()
        newest = files[3]
        if isinstance(newest, str):  # SQLite hands back text from an aggregate
            newest = datetime.fromisoformat(newest)
        if newest is not None and newest.tzinfo is None:
            newest = newest.replace(tzinfo=UTC)
        return {
            "kind": DOCUMENT_KIND,
            "version": DOCUMENT_VERSION,
            "customer": {
                "customer_id": c.customer_id,
                "external_user_id": c.external_user_id,
                "user_id": c.user_id,
                "sales_id": c.sales_id,
                "nickname": c.nickname,
                "owner_name": c.owner_name,
                "gone_at": _iso(c.gone_at),
            },
            "control": {
                "paused": c.paused_at is not None,
                "paused_at": _iso(c.paused_at),
                "paused_by": c.paused_by,
                "held": c.held_at is not None,
                "held_at": _iso(c.held_at),
                "held_reason": c.held_reason,
            },
            "cursor": cursor_document(cursor),
            "sync": {
                "last_attempt_at": _iso(state.last_attempt_at if state else None),
                "last_success_at": _iso(state.last_success_at if state else None),
                "last_error": state.last_error if state else None,
                "last_error_at": _iso(state.last_error_at if state else None),
                "consecutive_failures": state.consecutive_failures if state else 0,
                "next_due_at": _iso(schedule.next_due_at if schedule else None),
                "lease_owner": schedule.lease_owner if schedule else None,
                "last_full_at": _iso(schedule.last_full_at if schedule else None),
            },
            "files": {
                "live": files[0],
                "deleted": files[1],
                "newest": _iso(newest),
            },
            "archive": {
                "archived": files[2],
                "failed": int(failed or 0),
                "pending": files[0] - files[2] - int(failed or 0),
            },
            "rejected": [
                {
                    "record_id": r.record_id,
                    "reason": r.reason,
                    "run_id": r.run_id,
                    "at": _iso(r.last_rejected_at),
                }
                for r in rejected
            ],
            "audit": [{"action": a.action, "actor": a.actor, "at": _iso(a.at)} for a in audit],
        }

    async def set_paused(self, ref: int, paused: bool, actor: str) -> bool:
        """Pause or resume; False when it already was so (nothing is written then)."""
        async with self._engine.begin() as conn:
            before = await self._document(conn, ref)
            if before["control"]["paused"] == paused:
                return False
            now = utc_now()
            values = (
                {"paused_at": now, "paused_by": actor}
                if paused
                else {
                    "paused_at": None,
                    "paused_by": None,
                }
            )
            await conn.execute(update(Customer).where(Customer.id == ref).values(values))
            await self._audit(conn, ref, "pause" if paused else "resume", actor, now, before)
        return True

    async def reset(
        self,
        ref: int,
        cursor: CustomerCursor,
        actor: str,
        *,
        paused: bool | None = None,
        fence: LeaseFence | None = None,
    ) -> dict[str, Any]:
        """Put ``cursor`` in place (and the pause, when given), make the customer due at once,
        and record the audit row, in one transaction; returns the state after. ``fence`` runs
        first inside it (the lease check on PostgreSQL)."""
        async with self._engine.begin() as conn:
            if fence is not None:
                await check_leases(conn, self._dialect, [fence])
            before = await self._document(conn, ref)
            now = utc_now()
            table = CustomerSyncState.__table__
            values: dict[str, Any] = {name: getattr(cursor, name) for name in CURSOR_COLUMNS}
            stmt = self._dialect.insert(table).values(
                customer_ref=ref, consecutive_failures=0, **values
            )
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=[table.c.customer_ref], set_=values)
            )
            if paused is not None and paused != before["control"]["paused"]:
                pause = (
                    {"paused_at": now, "paused_by": actor}
                    if paused
                    else {
                        "paused_at": None,
                        "paused_by": None,
                    }
                )
                await conn.execute(update(Customer).where(Customer.id == ref).values(pause))
            await conn.execute(
                update(CustomerSchedule)
                .where(CustomerSchedule.customer_ref == ref)
                .values(next_due_at=now)
            )
            return await self._audit(conn, ref, "reset", actor, now, before)

    async def record(self, ref: int, action: str, actor: str, before: dict[str, Any]) -> None:
        """An audit row for an action done elsewhere (a reconcile), with the state now."""
        async with self._engine.begin() as conn:
            await self._audit(conn, ref, action, actor, utc_now(), before)

    async def _audit(
        self,
        conn: AsyncConnection,
        ref: int,
        action: str,
        actor: str,
        at: datetime,
        before: dict[str, Any],
    ) -> dict[str, Any]:
        after = await self._document(conn, ref)
        await conn.execute(
            insert(CustomerAudit).values(
                customer_ref=ref,
                action=action,
                actor=actor,
                at=at,
                before=encode_json(_without_history(before)),
                after=encode_json(_without_history(after)),
            )
        )
        return after

    async def audit_rows(self, ref: int) -> Sequence[dict[str, Any]]:
        """Every audit row of the customer, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(CustomerAudit.__table__)
                .where(CustomerAudit.customer_ref == ref)
                .order_by(CustomerAudit.id)
            )
            return [dict(r) for r in rows.mappings()]


def _without_history(document: dict[str, Any]) -> dict[str, Any]:
    """The state itself, without the recent histories (the audit trail must not nest)."""
    return {k: v for k, v in document.items() if k not in ("audit", "rejected")}
