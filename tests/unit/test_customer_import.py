"""Planning an import: matching, the identity-clash rules, and counts, without a database."""

from __future__ import annotations

from sync.domain.customer_import import KnownCustomer, plan_import
from sync.domain.customers_file import CustomerRow


def known(ref: int, customer_id: int | None, ext: str | None = None) -> KnownCustomer:
    return KnownCustomer(ref, customer_id, ext, None, None)


def line(n: int, customer_id: int | None, ext: str | None = None, user: str | None = None):
    return CustomerRow(customer_id, user, ext, None, line=n)


def test_new_rows_are_inserts_and_known_ones_updates_once() -> None:
    plan = plan_import(
        [known(1, 10), known(2, None, "wm-b")],
        [
            line(2, 10, "wm-a"),  # completes customer 10
            line(3, 10, None, "u1"),  # and again: still one update for ref 1
            line(4, 20, "wm-b"),  # gives wm-b's customer its customer_id
            line(5, 30),  # new
            line(6, 30, "wm-c"),  # completes the new one before it is written
            line(7, 10, "wm-a", "u1"),  # nothing new
        ],
    )
    assert (plan.added, plan.updated, plan.unchanged, plan.conflicts) == (1, 4, 1, [])
    assert [(c.ref, c.customer_id, c.external_user_id, c.user_id) for c in plan.updates] == [
        (1, 10, "wm-a", "u1"),
        (2, 20, "wm-b", None),
    ]
    assert [(c.ref, c.customer_id, c.external_user_id) for c in plan.inserts] == [
        (None, 30, "wm-c")
    ]


def test_clashes_are_set_aside_with_their_line() -> None:
    plan = plan_import(
        [known(1, 10, "wm-a"), known(2, 20, "wm-b"), known(3, None, "wm-c")],
        [
            line(2, 10, "wm-b"),  # wm-b is customer 20's
            line(3, 10, "wm-x"),  # customer 10 already has wm-a
            line(4, 99, "wm-a"),  # wm-a belongs to 10, not 99
            line(5, 40),  # new
            line(6, 41, "wm-c"),  # fine: wm-c's customer had no customer_id
            line(7, 40, "wm-c"),  # wm-c is now 41's
        ],
    )
    assert [p.line for p in plan.conflicts] == [2, 3, 4, 7]
    assert "wm-b belongs to customer_id 20, not 10" in plan.conflicts[0].reason
    assert "already has external_user_id wm-a, not wm-x" in plan.conflicts[1].reason
    assert "belongs to customer_id 10, not 99" in plan.conflicts[2].reason
    assert (plan.added, plan.updated) == (1, 1)


def test_planning_the_result_again_changes_nothing() -> None:
    rows = [line(2, 1, "wm-1", "a"), line(3, 2), line(4, None, "wm-3"), line(5, 2, "wm-2")]
    first = plan_import([], rows)
    stored = [
        KnownCustomer(ref, c.customer_id, c.external_user_id, c.user_id, c.sales_id)
        for ref, c in enumerate(first.inserts, start=1)
    ]
    again = plan_import(stored, rows)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4)
    assert again.inserts == [] and again.updates == []
