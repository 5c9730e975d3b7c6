"""A customer as every layer names it: the mirror's row id and the ids Tanmarket knows it by."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def customer_label(customer_id: int | None, external_user_id: str | None) -> str:
    """How logs, tables and health name a customer: its customer_id, else ``ext:<WeCom id>``."""
    return str(customer_id) if customer_id is not None else f"ext:{external_user_id}"


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """What a file-list request needs of a customer, with the mirror's row id (``ref``)."""

    ref: int
    customer_id: int | None
    external_user_id: str | None
    user_id: str | None
    sales_id: int | None

    @property
    def label(self) -> str:
        return customer_label(self.customer_id, self.external_user_id)


def unknown_selectors(selectors: Sequence[str], found: Iterable[CustomerKey]) -> list[str]:
    """The selectors (customer_id or external_user_id, as typed) that name none of ``found``."""
    known: set[str | None] = set()
    for customer in found:
        known |= {str(customer.customer_id), customer.external_user_id}
    return [s for s in selectors if s not in known]
