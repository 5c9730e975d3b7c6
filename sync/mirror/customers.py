"""The customers table: importing customers and listing the ones a pass syncs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.domain.customer_import import IDENTITY_FIELDS, KnownCustomer, plan_import
from sync.domain.customers import CustomerKey
from sync.domain.customers_file import CustomerRow, LineProblem
from sync.domain.records import is_ascii_digits
from sync.mirror.models import Customer, utc_now


@dataclass(frozen=True, slots=True)
class ImportCounts:
    added: int
    updated: int
    unchanged: int
    conflicts: list[LineProblem]


# Rows per bulk statement: large enough that statement overhead vanishes, small enough that
# the parameter lists of a 100,000-line file are never all in memory at once.
_BULK_ROWS = 5_000


def _chunks(items: list[KnownCustomer]) -> Iterator[list[KnownCustomer]]:
    for start in range(0, len(items), _BULK_ROWS):
        yield items[start : start + _BULK_ROWS]


class CustomerTable:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def import_rows(self, rows: Sequence[CustomerRow]) -> ImportCounts:
        """Upsert customers, matched by customer_id, else by external_user_id. Idempotent.

        The known customers are read once and the file is planned against them in memory
        (sync/domain/customer_import.py); the plan is then written in bulk, in one
        transaction, so a file imports whole or not at all."""
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two imports planning against the same snapshot could both add a customer;
                # one waits for the other instead. Reads (passes, status) are not blocked.
                await conn.execute(text("LOCK TABLE customers IN SHARE ROW EXCLUSIVE MODE"))
            columns = Customer.__table__.c
            known = [
                KnownCustomer(r.id, r.customer_id, r.external_user_id, r.user_id, r.sales_id)
                for r in await conn.execute(
                    select(
                        columns.id,
                        columns.customer_id,
                        columns.external_user_id,
                        columns.user_id,
                        columns.sales_id,
                    )
                )
            ]
            plan = plan_import(known, rows)
            now = utc_now()
            for chunk in _chunks(plan.inserts):
                await conn.execute(
                    insert(Customer),
                    [{**c.values(), "created_at": now, "updated_at": now} for c in chunk],
                )
            for chunk in _chunks(plan.updates):
                await conn.execute(
                    update(Customer)
                    .where(Customer.id == bindparam("ref"))
                    .values(
                        {
                            **{name: bindparam(f"new_{name}") for name in IDENTITY_FIELDS},
                            "updated_at": now,
                        }
                    ),
                    [
                        {"ref": c.ref, **{f"new_{k}": v for k, v in c.values().items()}}
                        for c in chunk
                    ],
                )
        return ImportCounts(plan.added, plan.updated, plan.unchanged, plan.conflicts)

    async def keys(self, selectors: Sequence[str] = ()) -> list[CustomerKey]:
        """All customers in id order, or those whose customer_id or external_user_id is named."""
        # Plain columns, not ORM entities: 100,000 customers as entities cost hundreds of MB.
        columns = Customer.__table__.c
        query = select(
            columns.id,
            columns.customer_id,
            columns.external_user_id,
            columns.user_id,
            columns.sales_id,
        ).order_by(columns.id)
        if selectors:
            numeric = [int(s) for s in selectors if is_ascii_digits(s) and len(s) <= 19]
            query = query.where(
                or_(Customer.customer_id.in_(numeric), Customer.external_user_id.in_(selectors))
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            CustomerKey(r.id, r.customer_id, r.external_user_id, r.user_id, r.sales_id)
            for r in rows
        ]
