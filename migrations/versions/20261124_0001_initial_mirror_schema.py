"""initial mirror schema: customers, customer_files, customer_sync_state, sync_runs,
rejected_records

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the model types: a migration must not change when the models do.
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("external_user_id", sa.String(length=128), nullable=True),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("sales_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.CheckConstraint(
            "customer_id IS NOT NULL OR external_user_id IS NOT NULL",
            name=op.f("ck_customers_identified"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customers_customer_id")),
        sa.UniqueConstraint("external_user_id", name=op.f("uq_customers_external_user_id")),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", INSTANT, nullable=False),
        sa.Column("finished_at", INSTANT, nullable=True),
        sa.Column("customers_total", sa.Integer(), nullable=False),
        sa.Column("customers_ok", sa.Integer(), nullable=False),
        sa.Column("customers_failed", sa.Integer(), nullable=False),
        sa.Column("records_inserted", sa.BigInteger(), nullable=False),
        sa.Column("records_updated", sa.BigInteger(), nullable=False),
        sa.Column("records_unchanged", sa.BigInteger(), nullable=False),
        sa.Column("records_rejected", sa.BigInteger(), nullable=False),
        sa.Column("records_deleted", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("retries", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_index(op.f("ix_sync_runs_started_at"), "sync_runs", ["started_at"])
    op.create_table(
        "customer_files",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("source_customer_id", KEY, nullable=False),
        sa.Column("corp_id", sa.Text(), nullable=True),
        sa.Column("sales_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("create_time", INSTANT, nullable=True),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("file_url", sa.Text(), nullable=True),
        sa.Column("file_type", sa.String(length=32), nullable=True),
        sa.Column("file_size_text", sa.Text(), nullable=True),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("file_store_id", sa.Text(), nullable=True),
        sa.Column("operator_id", sa.BigInteger(), nullable=True),
        sa.Column("author_name", sa.Text(), nullable=True),
        sa.Column("follow_content", sa.Text(), nullable=True),
        sa.Column("raw", DOCUMENT, nullable=False),
        sa.Column("first_seen_at", INSTANT, nullable=False),
        sa.Column("last_seen_at", INSTANT, nullable=False),
        sa.Column("deleted_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(
            ["source_customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_files_source_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_files")),
    )
    op.create_index(op.f("ix_customer_files_create_time"), "customer_files", ["create_time"])
    op.create_index(
        op.f("ix_customer_files_customer_id_create_time"),
        "customer_files",
        ["customer_id", "create_time"],
    )
    op.create_index(
        op.f("ix_customer_files_source_customer_id_id"),
        "customer_files",
        ["source_customer_id", "id"],
    )
    op.create_table(
        "customer_sync_state",
        sa.Column("customer_ref", KEY, autoincrement=False, nullable=False),
        sa.Column("high_water_id", sa.BigInteger(), nullable=True),
        sa.Column("pass_cursor_id", sa.BigInteger(), nullable=True),
        sa.Column("pass_top_id", sa.BigInteger(), nullable=True),
        sa.Column("pass_floor_id", sa.BigInteger(), nullable=True),
        sa.Column("pass_started_at", INSTANT, nullable=True),
        sa.Column("pass_full", sa.Boolean(), nullable=False),
        sa.Column("last_attempt_at", INSTANT, nullable=True),
        sa.Column("last_success_at", INSTANT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", INSTANT, nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_ref"],
            ["customers.id"],
            name=op.f("fk_customer_sync_state_customer_ref_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_ref", name=op.f("pk_customer_sync_state")),
    )
    op.create_table(
        "rejected_records",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("customer_ref", KEY, nullable=False),
        sa.Column("run_id", KEY, nullable=True),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("first_rejected_at", INSTANT, nullable=False),
        sa.Column("last_rejected_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_ref"],
            ["customers.id"],
            name=op.f("fk_rejected_records_customer_ref_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_rejected_records_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_records")),
        sa.UniqueConstraint(
            "customer_ref",
            "payload_sha256",
            name=op.f("uq_rejected_records_customer_ref_payload_sha256"),
        ),
    )


def downgrade() -> None:
    op.drop_table("rejected_records")
    op.drop_table("customer_sync_state")
    op.drop_table("customer_files")
    op.drop_table("sync_runs")
    op.drop_table("customers")
