"""console indexes: customers by gone_at, sync state by last success and by failures

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

The operator console filters 100,000 customers by state (failing, stale, gone) and draws a
histogram of their last successes; these indexes keep those reads from scanning every row.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_customers_gone_at"), "customers", ["gone_at"])
    op.create_index(
        op.f("ix_customer_sync_state_last_success_at"), "customer_sync_state", ["last_success_at"]
    )
    op.create_index(
        op.f("ix_customer_sync_state_consecutive_failures"),
        "customer_sync_state",
        ["consecutive_failures"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_customer_sync_state_consecutive_failures"), table_name="customer_sync_state"
    )
    op.drop_index(op.f("ix_customer_sync_state_last_success_at"), table_name="customer_sync_state")
    op.drop_index(op.f("ix_customers_gone_at"), table_name="customers")
