"""daemon: customer_schedule (poll interval, due time, lease), sync_workers, sync_runs.worker_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the model types: a migration must not change when the models do.
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customer_schedule",
        sa.Column("customer_ref", KEY, autoincrement=False, nullable=False),
        sa.Column("poll_interval_s", sa.Double(), nullable=True),
        sa.Column("next_due_at", INSTANT, nullable=True),
        sa.Column("last_new_files_at", INSTANT, nullable=True),
        sa.Column("full_requested_at", INSTANT, nullable=True),
        sa.Column("last_full_at", INSTANT, nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", INSTANT, nullable=True),
        sa.Column("last_worker_id", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_ref"],
            ["customers.id"],
            name=op.f("fk_customer_schedule_customer_ref_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_ref", name=op.f("pk_customer_schedule")),
    )
    op.create_index(op.f("ix_customer_schedule_next_due_at"), "customer_schedule", ["next_due_at"])
    op.create_index(op.f("ix_customer_schedule_lease_owner"), "customer_schedule", ["lease_owner"])
    op.create_table(
        "sync_workers",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", INSTANT, nullable=False),
        sa.Column("heartbeat_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_sync_workers")),
    )
    # A plain ADD COLUMN: SQLite does it in place, without rebuilding the table.
    op.add_column("sync_runs", sa.Column("worker_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("worker_id")
    op.drop_table("sync_workers")
    op.drop_index(op.f("ix_customer_schedule_lease_owner"), table_name="customer_schedule")
    op.drop_index(op.f("ix_customer_schedule_next_due_at"), table_name="customer_schedule")
    op.drop_table("customer_schedule")
