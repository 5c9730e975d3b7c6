"""the message push: push_inbox (one row per msgId, committed before the answer) and
push_rejections (refused pushes counted by reason)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "push_inbox",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_by", sa.String(length=128), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("customer_ref", _KEY, nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_ref"],
            ["customers.id"],
            name=op.f("fk_push_inbox_customer_ref_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_inbox")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_push_inbox_msg_id")),
    )
    op.create_index(op.f("ix_push_inbox_processed_at_id"), "push_inbox", ["processed_at", "id"])
    op.create_index(
        op.f("ix_push_inbox_customer_ref_synced_at"), "push_inbox", ["customer_ref", "synced_at"]
    )
    op.create_table(
        "push_rejections",
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("reason", name=op.f("pk_push_rejections")),
    )


def downgrade() -> None:
    op.drop_table("push_rejections")
    op.drop_index(op.f("ix_push_inbox_customer_ref_synced_at"), table_name="push_inbox")
    op.drop_index(op.f("ix_push_inbox_processed_at_id"), table_name="push_inbox")
    op.drop_table("push_inbox")
