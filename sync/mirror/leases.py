"""The lease check inside page transactions: a worker writes a customer's page only while its
lease on that customer is still its own, and the check renews the lease.

Every page transaction runs its pages' fences first. Lease fences of one transaction are
checked by one statement, ``UPDATE … RETURNING`` over all their customers, instead of one
statement per page: on PostgreSQL that check and the release of each customer cost about a
quarter of a backfill's CPU when made one by one (BENCHMARKS.md). On PostgreSQL the row lock the
update takes also keeps any other worker's claim off those customers until the transaction ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.domain.errors import LeaseLost
from sync.mirror.dialect import Dialect
from sync.mirror.models import CustomerSchedule

_SCHEDULE = cast(Table, CustomerSchedule.__table__)


@dataclass(frozen=True, slots=True)
class LeaseFence:
    """What ``check_leases`` checks first inside a transaction: ``worker_id`` still holds
    ``customer_ref``'s lease, which it renews for ``ttl`` seconds; ``on_renewed(at)`` is told the
    ``clock`` time the renewal was sent."""

    worker_id: str
    customer_ref: int
    ttl: float
    clock: Callable[[], float] | None = None
    on_renewed: Callable[[float], None] | None = None


async def check_leases(
    conn: AsyncConnection, dialect: Dialect, fences: Sequence[LeaseFence]
) -> None:
    """Renew every fence's lease, one statement per worker and ttl; LeaseLost (rolling the
    transaction back) names the first customer whose lease is no longer its worker's. Nothing
    to do for no fences."""
    began = [f.clock() if f.clock is not None else 0.0 for f in fences]
    groups: dict[tuple[str, float], list[LeaseFence]] = {}
    for fence in fences:
        groups.setdefault((fence.worker_id, fence.ttl), []).append(fence)
    for (worker_id, ttl), group in groups.items():
        result = await conn.execute(
            update(_SCHEDULE)
            .where(
                _SCHEDULE.c.customer_ref.in_([f.customer_ref for f in group]),
                _SCHEDULE.c.lease_owner == worker_id,
                _SCHEDULE.c.lease_expires_at > dialect.now(),
            )
            .values(lease_expires_at=dialect.now(ttl))
            .returning(_SCHEDULE.c.customer_ref)
        )
        renewed = set(result.scalars())
        for fence in group:
            if fence.customer_ref not in renewed:
                raise LeaseLost(f"lease on customer #{fence.customer_ref} expired")
    for fence, at in zip(fences, began, strict=True):
        if fence.on_renewed is not None:
            fence.on_renewed(at)
