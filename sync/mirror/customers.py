"""The customers table: importing customers and listing the ones a pass syncs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

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


class CustomerTable:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def import_rows(self, rows: Sequence[CustomerRow]) -> ImportCounts:
        """Upsert customers, matched by customer_id, else by external_user_id. Idempotent."""
        added = updated = unchanged = 0
        conflicts: list[LineProblem] = []
        async with self._engine.begin() as conn:
            existing = (await conn.execute(select(Customer.__table__))).mappings().all()
            by_id = {r["customer_id"]: dict(r) for r in existing if r["customer_id"] is not None}
            by_ext = {
                r["external_user_id"]: dict(r)
                for r in existing
                if r["external_user_id"] is not None
            }
            now = utc_now()
            for row in rows:
                match = by_id.get(row.customer_id) if row.customer_id is not None else None
                if match is None and row.external_user_id is not None:
                    match = by_ext.get(row.external_user_id)
                clash = _identity_clash(row, match, by_ext)
                if clash:
                    conflicts.append(LineProblem(row.line, clash))
                    continue
                given = {k: v for k, v in _customer_fields(row).items() if v is not None}
                if match is None:
                    values = {**_customer_fields(row), "created_at": now, "updated_at": now}
                    result = await conn.execute(
                        insert(Customer).values(values).returning(Customer.id)
                    )
                    record = {**values, "id": result.scalar_one()}
                    added += 1
                elif any(match[k] != v for k, v in given.items()):
                    await conn.execute(
                        update(Customer)
                        .where(Customer.id == match["id"])
                        .values(**given, updated_at=now)
                    )
                    record = {**match, **given}
                    updated += 1
                else:
                    unchanged += 1
                    continue
                if record["customer_id"] is not None:
                    by_id[record["customer_id"]] = record
                if record["external_user_id"] is not None:
                    by_ext[record["external_user_id"]] = record
        return ImportCounts(added, updated, unchanged, conflicts)

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


def _identity_clash(
    row: CustomerRow, match: dict[str, Any] | None, by_ext: dict[str, dict[str, Any]]
) -> str:
    """Why ``row`` cannot be merged into ``match`` ('' when it can): one customer never takes
    another's WeCom id, and a known id is never silently replaced by a different one."""
    if match is None:
        return ""
    if row.external_user_id is not None:
        owner = by_ext.get(row.external_user_id)
        if owner is not None and owner["id"] != match["id"]:
            return (
                f"external_user_id {row.external_user_id} belongs to customer_id "
                f"{owner['customer_id']}, not {row.customer_id}"
            )
        if match["external_user_id"] not in (None, row.external_user_id):
            return (
                f"customer_id {match['customer_id']} already has external_user_id "
                f"{match['external_user_id']}, not {row.external_user_id}"
            )
    if row.customer_id is not None and match["customer_id"] not in (None, row.customer_id):
        return (
            f"external_user_id {match['external_user_id']} belongs to customer_id "
            f"{match['customer_id']}, not {row.customer_id}"
        )
    return ""


def _customer_fields(row: CustomerRow) -> dict[str, Any]:
    return {
        "customer_id": row.customer_id,
        "external_user_id": row.external_user_id,
        "user_id": row.user_id,
        "sales_id": row.sales_id,
    }
