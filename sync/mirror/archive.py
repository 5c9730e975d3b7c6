"""The archive's side of the database: which files still need their bytes fetched, who is
fetching them, and what came of it.

A file is *pending* while it is live (not deleted upstream) and has no ``content_sha256``.
Archivers take pending files newest first through a *claim* on their ``file_archive_state``
row: a conditional UPDATE that only one claimer can win, so two daemons on one PostgreSQL never
download the same file at once. A claim lasts ``ttl_s`` and is renewed while the download runs;
an archiver that dies leaves its claims to expire. Downloads hold no transaction: a claim, a
renewal and an outcome are each a short transaction of their own, apart from the file syncs'
page transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.mirror.dialect import Dialect
from sync.mirror.models import CustomerFile, FileArchiveState

_STATE = cast(Table, FileArchiveState.__table__)
_FILES = cast(Table, CustomerFile.__table__)


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """One file to fetch, with what the checks on its body need."""

    file_id: int
    url: str | None
    size_text: str | None
    file_type: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class CoverageRow:
    status: str  # archived | pending | failed
    reason: str | None
    files: int
    bytes: int


class ArchiveTable:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect

    async def claim(
        self,
        claimer: str,
        limit: int,
        *,
        ttl_s: float,
        due_only: bool,
        below_id: int | None = None,
    ) -> list[ArchiveItem]:
        """Up to ``limit`` pending files, newest first, now held by this claimer.

        ``due_only`` skips files whose next try (after a failure) is still ahead; ``below_id``
        takes only older files than those already handed out in this run.
        """
        token = f"{claimer[:95]}#{uuid.uuid4().hex}"
        async with self._engine.begin() as conn:
            now = await self._dialect.read_now(conn)
            unclaimed = or_(
                _STATE.c.file_id.is_(None),
                _STATE.c.claim_expires_at.is_(None),
                _STATE.c.claim_expires_at < now,
            )
            conditions = [
                _FILES.c.deleted_at.is_(None),
                _FILES.c.content_sha256.is_(None),
                unclaimed,
            ]
            if due_only:
                conditions.append(or_(_STATE.c.next_try_at.is_(None), _STATE.c.next_try_at <= now))
            if below_id is not None:
                conditions.append(_FILES.c.id < below_id)
            query = (
                select(_FILES.c.id)
                .select_from(_FILES.outerjoin(_STATE, _STATE.c.file_id == _FILES.c.id))
                .where(and_(*conditions))
                .order_by(_FILES.c.id.desc())
                .limit(limit)
            )
            if self._dialect.postgres:
                # Claimers racing each other take disjoint candidates instead of all reaching
                # for the same newest ones; the row locks last only this short transaction.
                query = query.with_for_update(of=_FILES, skip_locked=True)
            candidates = list((await conn.scalars(query)).all())
            if not candidates:
                return []
            await conn.execute(
                self._dialect.insert(_STATE)
                .values([{"file_id": file_id, "attempts": 0} for file_id in candidates])
                .on_conflict_do_nothing(index_elements=["file_id"])
            )
            # The WHERE is evaluated again on each row as the UPDATE reaches it, so of two
            # claimers racing for a row only the first one's claim holds.
            await conn.execute(
                update(_STATE)
                .where(
                    _STATE.c.file_id.in_(candidates),
                    or_(_STATE.c.claim_expires_at.is_(None), _STATE.c.claim_expires_at < now),
                )
                .values(claimed_by=token, claim_expires_at=now + timedelta(seconds=ttl_s))
            )
            rows = await conn.execute(
                select(
                    _FILES.c.id,
                    _FILES.c.file_url,
                    _FILES.c.file_size_text,
                    _FILES.c.file_type,
                    _STATE.c.attempts,
                )
                .select_from(_FILES.join(_STATE, _STATE.c.file_id == _FILES.c.id))
                .where(_STATE.c.claimed_by == token)
                .order_by(_FILES.c.id.desc())
            )
            return [ArchiveItem(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def renew(self, file_ids: Sequence[int], ttl_s: float) -> None:
        """Extend the claims on files still being fetched."""
        if not file_ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_STATE)
                .where(_STATE.c.file_id.in_(list(file_ids)), _STATE.c.claimed_by.is_not(None))
                .values(claim_expires_at=self._dialect.now(ttl_s))
            )

    async def record_archived(self, file_id: int, sha256_hex: str, length: int) -> None:
        async with self._engine.begin() as conn:
            now = await self._dialect.read_now(conn)
            await conn.execute(
                update(_FILES)
                .where(_FILES.c.id == file_id)
                .values(content_sha256=sha256_hex, archived_at=now)
            )
            await conn.execute(
                update(_STATE)
                .where(_STATE.c.file_id == file_id)
                .values(
                    attempts=_STATE.c.attempts + 1,
                    last_attempt_at=now,
                    last_reason=None,
                    last_error=None,
                    next_try_at=None,
                    content_bytes=length,
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )

    async def record_failure(
        self, file_id: int, reason: str, detail: str, *, retry_in_s: float
    ) -> None:
        async with self._engine.begin() as conn:
            now = await self._dialect.read_now(conn)
            await conn.execute(
                update(_STATE)
                .where(_STATE.c.file_id == file_id)
                .values(
                    attempts=_STATE.c.attempts + 1,
                    last_attempt_at=now,
                    last_reason=reason,
                    last_error=detail[:2000],
                    next_try_at=now + timedelta(seconds=retry_in_s),
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )

    async def release(self, file_ids: Sequence[int]) -> None:
        """Hand back claims on files that were not tried (a run stopping early)."""
        if not file_ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_STATE)
                .where(_STATE.c.file_id.in_(list(file_ids)))
                .values(claimed_by=None, claim_expires_at=None)
            )

    async def pending_count(self, *, due_only: bool) -> int:
        async with self._engine.connect() as conn:
            now = await self._dialect.read_now(conn)
            conditions: list[Any] = [
                _FILES.c.deleted_at.is_(None),
                _FILES.c.content_sha256.is_(None),
            ]
            if due_only:
                conditions.append(or_(_STATE.c.next_try_at.is_(None), _STATE.c.next_try_at <= now))
            value = await conn.scalar(
                select(func.count())
                .select_from(_FILES.outerjoin(_STATE, _STATE.c.file_id == _FILES.c.id))
                .where(and_(*conditions))
            )
            return int(value or 0)

    async def coverage(self) -> list[CoverageRow]:
        """The ``report_archive_coverage`` view: files and bytes per status and reason."""
        async with self._engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "SELECT status, reason, files, bytes FROM report_archive_coverage"
            )
            return sorted(
                (
                    CoverageRow(r["status"], r["reason"], int(r["files"]), int(r["bytes"] or 0))
                    for r in result.mappings()
                ),
                key=lambda r: (r.status, r.reason or ""),
            )

    async def stored_objects(self) -> dict[str, int]:
        """Distinct contents archived (what the store holds under sha256/), and their bytes."""
        async with self._engine.connect() as conn:
            inner = (
                select(_FILES.c.content_sha256, func.max(_STATE.c.content_bytes).label("size"))
                .select_from(_FILES.join(_STATE, _STATE.c.file_id == _FILES.c.id))
                .where(_FILES.c.content_sha256.is_not(None))
                .group_by(_FILES.c.content_sha256)
                .subquery()
            )
            row = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(inner.c.size), 0)).select_from(
                        inner
                    )
                )
            ).one()
            return {"objects": int(row[0]), "bytes": int(row[1])}
