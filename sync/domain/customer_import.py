"""Planning a customers import: which rows add a customer, which change a known one, and
which contradict the identities already known. Pure: the known customers and the file's rows
in, a plan out, so the store can write the whole plan in a few bulk statements.

A row is matched by customer_id, else by external_user_id. One customer never takes another's
WeCom id, and a known id is never silently replaced by a different one: such a row is set
aside with its line number, and the rows after it are judged against what the rows before it
established (a customer added on line 2 can be completed on line 9).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sync.domain.customers_file import CustomerRow, LineProblem

IDENTITY_FIELDS = ("customer_id", "external_user_id", "user_id", "sales_id")


@dataclass(slots=True)
class KnownCustomer:
    """A customer as the plan sees it: ``ref`` is the mirror's row id, None until inserted."""

    ref: int | None
    customer_id: int | None
    external_user_id: str | None
    user_id: str | None
    sales_id: int | None

    def values(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}


@dataclass(slots=True)
class ImportPlan:
    inserts: list[KnownCustomer] = field(default_factory=list)
    # Known customers (ref set) whose fields the file changes, each once with its final values.
    updates: list[KnownCustomer] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: list[LineProblem] = field(default_factory=list)


def plan_import(known: Iterable[KnownCustomer], rows: Sequence[CustomerRow]) -> ImportPlan:
    """What importing ``rows`` over the ``known`` customers does. Idempotent: planning the
    same rows over the result adds and changes nothing."""
    by_id: dict[int, KnownCustomer] = {}
    by_ext: dict[str, KnownCustomer] = {}
    for customer in known:
        _index(customer, by_id, by_ext)
    plan = ImportPlan()
    changed: dict[int, KnownCustomer] = {}  # by id(): each known customer updated once
    for row in rows:
        match = by_id.get(row.customer_id) if row.customer_id is not None else None
        if match is None and row.external_user_id is not None:
            match = by_ext.get(row.external_user_id)
        clash = identity_clash(row, match, by_ext)
        if clash:
            plan.conflicts.append(LineProblem(row.line, clash))
            continue
        if match is None:
            created = KnownCustomer(
                None, row.customer_id, row.external_user_id, row.user_id, row.sales_id
            )
            plan.inserts.append(created)
            _index(created, by_id, by_ext)
            plan.added += 1
            continue
        given = {name: getattr(row, name) for name in IDENTITY_FIELDS}
        given = {name: value for name, value in given.items() if value is not None}
        if all(getattr(match, name) == value for name, value in given.items()):
            plan.unchanged += 1
            continue
        for name, value in given.items():
            setattr(match, name, value)
        _index(match, by_id, by_ext)
        if match.ref is not None:
            changed[id(match)] = match
        plan.updated += 1
    plan.updates = list(changed.values())
    return plan


def identity_clash(
    row: CustomerRow, match: KnownCustomer | None, by_ext: dict[str, KnownCustomer]
) -> str:
    """Why ``row`` cannot be merged into ``match`` ('' when it can)."""
    if match is None:
        return ""
    if row.external_user_id is not None:
        owner = by_ext.get(row.external_user_id)
        if owner is not None and owner is not match:
            return (
                f"external_user_id {row.external_user_id} belongs to customer_id "
                f"{owner.customer_id}, not {row.customer_id}"
            )
        if match.external_user_id not in (None, row.external_user_id):
            return (
                f"customer_id {match.customer_id} already has external_user_id "
                f"{match.external_user_id}, not {row.external_user_id}"
            )
    if row.customer_id is not None and match.customer_id not in (None, row.customer_id):
        return (
            f"external_user_id {match.external_user_id} belongs to customer_id "
            f"{match.customer_id}, not {row.customer_id}"
        )
    return ""


def _index(
    customer: KnownCustomer, by_id: dict[int, KnownCustomer], by_ext: dict[str, KnownCustomer]
) -> None:
    if customer.customer_id is not None:
        by_id[customer.customer_id] = customer
    if customer.external_user_id is not None:
        by_ext[customer.external_user_id] = customer
