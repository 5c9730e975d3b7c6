"""A customer as every layer names it: the mirror's row id and the ids Tanmarket knows it by."""

from __future__ import annotations

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
