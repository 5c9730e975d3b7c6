"""The push inbox: every accepted push is a row committed before its answer; processing (after
the answer) reads rows in batches and applies what each asks for in the same transaction that
marks it processed, so a crash at any point leaves either the row pending or its effect done.

On PostgreSQL several daemons may process at once: a batch is taken with ``FOR UPDATE SKIP
LOCKED``, so no row is processed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.domain.push import (
    CUSTOMER_TYPES_GONE,
    CustomerMention,
    Effect,
    PushMessage,
    parse_message,
    plan_push,
)
from sync.mirror.dialect import Dialect
from sync.mirror.models import (
    Customer,
    CustomerSchedule,
    PushInbox,
    PushRejection,
    utc_now,
)

_INBOX = cast(Table, PushInbox.__table__)
_CUSTOMERS = cast(Table, Customer.__table__)
_SCHEDULE = cast(Table, CustomerSchedule.__table__)
_REJECTIONS = cast(Table, PushRejection.__table__)
# Outcomes whose customer a later sync settles (see ``settle``).
_SYNCING = ("sync", "add")
UNKNOWN_CUSTOMER = "unknown_customer"
# Rows deleted per transaction when pruning: one IN list well under both databases' bound
# parameter limits, and a short hold of SQLite's write lock.
_PRUNE_CHUNK = 2_000
# Processed rows compared with a sync's start come from the database's clock on PostgreSQL
# and the daemon's own elsewhere; a row this close before the start counts as after it (an
# extra sync, never a missed one).
_CLOCK_MARGIN = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Processed:
    """One push processing handled: its type, what came of it, and when it was received."""

    type: str
    outcome: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Settled:
    """What a finished sync of one customer settled: the receipt times of the pushes it
    covered, and whether a push processed during it leaves the customer due again."""

    received_at: list[datetime]
    due_again: bool


@dataclass
class InboxStatus:
    received: int = 0
    processed: int = 0
    pending: int = 0
    synced: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    lags_s: list[float] = field(default_factory=list)  # receipt to sync, newest syncs

    def lag_at(self, share: float) -> float | None:
        """The lag that ``share`` (0.5, 0.99) of the sampled pushes stayed within."""
        if not self.lags_s:
            return None
        lags = sorted(self.lags_s)
        return lags[min(len(lags) - 1, int(len(lags) * share))]


class PushInboxStore:
    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect

    # -- the accept path -------------------------------------------------------------------

    async def insert(self, messages: Sequence[PushMessage], received_by: str | None) -> list[bool]:
        """Commit ``messages`` in one transaction; True for each that is new, False for a
        ``msgId`` already in the inbox (or earlier in the same batch)."""
        now = utc_now()
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for message in messages:
            if message.msg_id in seen:
                continue
            seen.add(message.msg_id)
            rows.append(
                {
                    "msg_id": message.msg_id,
                    "type": message.type,
                    "raw": message.text,
                    "received_at": now,
                    "received_by": received_by,
                }
            )
        stmt = (
            self._dialect.insert(_INBOX)
            .on_conflict_do_nothing(index_elements=[_INBOX.c.msg_id])
            .returning(_INBOX.c.msg_id)
        )
        async with self._engine.begin() as conn:
            inserted = {r.msg_id for r in await conn.execute(stmt, rows)} if rows else set()
        fresh: list[bool] = []
        for message in messages:
            fresh.append(message.msg_id in inserted)
            inserted.discard(message.msg_id)
        return fresh

    async def count_rejections(self, counts: dict[str, tuple[int, str]]) -> None:
        """Add ``counts`` (reason: how many, the last detail) to the rejection tally."""
        if not counts:
            return
        now = utc_now()
        stmt = self._dialect.insert(_REJECTIONS)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_REJECTIONS.c.reason],
            set_={
                "count": _REJECTIONS.c.count + stmt.excluded.count,
                "last_at": stmt.excluded.last_at,
                "last_detail": stmt.excluded.last_detail,
            },
        )
        rows = [
            {"reason": reason, "count": n, "last_at": now, "last_detail": detail}
            for reason, (n, detail) in sorted(counts.items())
        ]
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    # -- processing ------------------------------------------------------------------------

    async def process_pending(
        self, limit: int, gone_types: frozenset[str] = CUSTOMER_TYPES_GONE
    ) -> list[Processed]:
        """Apply up to ``limit`` pending pushes, oldest first, and mark them processed
        (``gone_types``: the types that say a customer was deleted)."""
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(_INBOX.c.id, _INBOX.c.type, _INBOX.c.raw, _INBOX.c.received_at)
                    .where(_INBOX.c.processed_at.is_(None))
                    .order_by(_INBOX.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            plans = [
                plan_push(row.type, parse_message(row.raw).content, gone_types) for row in rows
            ]
            mentions = [p.customer for p in plans if p.customer is not None]
            known = await _resolve(conn, mentions)
            adding = [
                p.customer
                for p in plans
                if p.effect is Effect.ADD
                and p.customer is not None
                and _find(known, p.customer) is None
            ]
            if adding:
                await self._add_customers(conn, adding)
                known = await _resolve(conn, mentions)
            outcomes: list[tuple[str, int | None]] = []
            due: set[int] = set()
            gone: set[int] = set()
            for plan in plans:
                ref = _find(known, plan.customer) if plan.customer is not None else None
                if plan.effect is Effect.NONE:
                    outcomes.append(("none", None))
                elif ref is None:
                    outcomes.append((UNKNOWN_CUSTOMER, None))
                elif plan.effect is Effect.GONE:
                    gone.add(ref)
                    outcomes.append(("gone", ref))
                else:
                    due.add(ref)
                    outcomes.append((plan.effect.value, ref))
            if gone:
                await conn.execute(
                    update(_CUSTOMERS)
                    .where(_CUSTOMERS.c.id.in_(sorted(gone)), _CUSTOMERS.c.gone_at.is_(None))
                    .values(gone_at=utc_now(), updated_at=utc_now())
                )
            if due:
                await self._make_due(conn, sorted(due))
            await conn.execute(
                update(_INBOX)
                .where(_INBOX.c.id == bindparam("row_id"))
                .values(
                    processed_at=self._dialect.now(),
                    outcome=bindparam("new_outcome"),
                    customer_ref=bindparam("ref"),
                ),
                [
                    {"row_id": row.id, "new_outcome": outcome, "ref": ref}
                    for row, (outcome, ref) in zip(rows, outcomes, strict=True)
                ],
            )
        return [
            Processed(row.type, outcome, row.received_at)
            for row, (outcome, _ref) in zip(rows, outcomes, strict=True)
        ]

    async def _add_customers(
        self, conn: AsyncConnection, mentions: Sequence[CustomerMention]
    ) -> None:
        now = utc_now()
        rows = {
            (m.customer_id, m.external_user_id): {
                "customer_id": m.customer_id,
                "external_user_id": m.external_user_id,
                "user_id": m.user_id,
                "created_at": now,
                "updated_at": now,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for m in mentions
        }
        # Either identity may already be taken (by a customer this batch could not match on
        # the other): such a row is left as it is.
        await conn.execute(
            self._dialect.insert(_CUSTOMERS).on_conflict_do_nothing(), list(rows.values())
        )

    async def _make_due(self, conn: AsyncConnection, refs: list[int]) -> None:
        await conn.execute(
            self._dialect.insert(_SCHEDULE).on_conflict_do_nothing(
                index_elements=[_SCHEDULE.c.customer_ref]
            ),
            [{"customer_ref": ref} for ref in refs],
        )
        now = self._dialect.now()
        await conn.execute(
            update(_SCHEDULE)
            .where(
                _SCHEDULE.c.customer_ref.in_(refs),
                _SCHEDULE.c.next_due_at.is_not(None),
                _SCHEDULE.c.next_due_at > now,
            )
            .values(next_due_at=now)
        )

    # -- after a sync ----------------------------------------------------------------------

    async def settle(self, customer_ref: int, started_at: datetime) -> Settled:
        """A sync of the customer that began at ``started_at`` finished: the pushes processed
        before it are settled; one processed since makes the customer due again."""
        covered_until = started_at - _CLOCK_MARGIN
        mine = (
            (_INBOX.c.customer_ref == customer_ref)
            & _INBOX.c.synced_at.is_(None)
            & _INBOX.c.outcome.in_(_SYNCING)
        )
        now = self._dialect.now()
        async with self._engine.begin() as conn:
            settled = await conn.execute(
                update(_INBOX)
                .where(mine, _INBOX.c.processed_at <= covered_until)
                .values(synced_at=utc_now())
                .returning(_INBOX.c.received_at)
            )
            received = [row.received_at for row in settled]
            # A push processed since the sync began: due now, as _make_due does (the row is
            # there, the sync just finished it); one statement that also says whether.
            again = await conn.execute(
                update(_SCHEDULE)
                .where(
                    _SCHEDULE.c.customer_ref == customer_ref,
                    select(_INBOX.c.id).where(mine).exists(),
                )
                .values(
                    next_due_at=case(
                        (_SCHEDULE.c.next_due_at > now, now), else_=_SCHEDULE.c.next_due_at
                    )
                )
                .returning(_SCHEDULE.c.customer_ref)
            )
            due_again = again.first() is not None
        return Settled(received, due_again)

    # -- retention -------------------------------------------------------------------------

    async def prune(self, received_before: datetime) -> int:
        """Delete processed rows received before ``received_before``, a chunk per transaction
        (pending rows are work still to do and stay); how many were deleted."""
        oldest = (
            select(_INBOX.c.id)
            .where(_INBOX.c.processed_at.is_not(None), _INBOX.c.received_at < received_before)
            .order_by(_INBOX.c.id)
            .limit(_PRUNE_CHUNK)
        )
        deleted = 0
        while True:
            async with self._engine.begin() as conn:
                ids = list((await conn.execute(oldest)).scalars())
                if ids:
                    await conn.execute(delete(_INBOX).where(_INBOX.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < _PRUNE_CHUNK:
                return deleted

    # -- reading ---------------------------------------------------------------------------

    async def for_customer(self, customer_ref: int, limit: int = 20) -> list[dict[str, Any]]:
        """The newest pushes that named one customer, with what came of each."""
        c = _INBOX.c
        query = (
            select(c.msg_id, c.type, c.received_at, c.processed_at, c.outcome, c.synced_at)
            .where(c.customer_ref == customer_ref)
            .order_by(c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def status(self, lag_sample: int = 1000) -> InboxStatus:
        status = InboxStatus()
        async with self._engine.connect() as conn:
            for kind, outcome, processed, synced, count in await conn.execute(
                select(
                    _INBOX.c.type,
                    _INBOX.c.outcome,
                    _INBOX.c.processed_at.is_not(None),
                    _INBOX.c.synced_at.is_not(None),
                    func.count(),
                ).group_by(
                    _INBOX.c.type,
                    _INBOX.c.outcome,
                    _INBOX.c.processed_at.is_not(None),
                    _INBOX.c.synced_at.is_not(None),
                )
            ):
                status.received += count
                status.by_type[kind] = status.by_type.get(kind, 0) + count
                if processed:
                    status.processed += count
                    status.by_outcome[outcome] = status.by_outcome.get(outcome, 0) + count
                else:
                    status.pending += count
                if synced:
                    status.synced += count
            for reason, count in await conn.execute(
                select(_REJECTIONS.c.reason, _REJECTIONS.c.count)
            ):
                status.rejected[reason] = int(count)
            for received_at, synced_at in await conn.execute(
                select(_INBOX.c.received_at, _INBOX.c.synced_at)
                .where(_INBOX.c.synced_at.is_not(None))
                .order_by(_INBOX.c.synced_at.desc())
                .limit(lag_sample)
            ):
                status.lags_s.append(max(0.0, (synced_at - received_at).total_seconds()))
        return status


async def _resolve(
    conn: AsyncConnection, mentions: Sequence[CustomerMention]
) -> dict[tuple[str, object], int]:
    """The known customers among ``mentions``: ("id", customerId) and ("ext", externalUserId)
    to the customers row."""
    ids = sorted({m.customer_id for m in mentions if m.customer_id is not None})
    externals = sorted({m.external_user_id for m in mentions if m.external_user_id is not None})
    if not ids and not externals:
        return {}
    rows = await conn.execute(
        select(_CUSTOMERS.c.id, _CUSTOMERS.c.customer_id, _CUSTOMERS.c.external_user_id).where(
            or_(_CUSTOMERS.c.customer_id.in_(ids), _CUSTOMERS.c.external_user_id.in_(externals))
        )
    )
    known: dict[tuple[str, object], int] = {}
    for row in rows:
        if row.customer_id is not None:
            known["id", row.customer_id] = row.id
        if row.external_user_id is not None:
            known["ext", row.external_user_id] = row.id
    return known


def _find(known: dict[tuple[str, object], int], mention: CustomerMention) -> int | None:
    if mention.customer_id is not None and ("id", mention.customer_id) in known:
        return known["id", mention.customer_id]
    if mention.external_user_id is not None:
        return known.get(("ext", mention.external_user_id))
    return None
