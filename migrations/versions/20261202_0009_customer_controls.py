"""operator controls on one customer: paused and held columns on customers, and the
customer_audit table of what operators did

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite does them in place, so the views over customers stand.
    op.add_column("customers", sa.Column("paused_at", sa.DateTime(timezone=True)))
    op.add_column("customers", sa.Column("paused_by", sa.String(length=128)))
    op.add_column("customers", sa.Column("held_at", sa.DateTime(timezone=True)))
    op.add_column("customers", sa.Column("held_reason", sa.Text()))
    op.create_table(
        "customer_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_ref", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_ref"],
            ["customers.id"],
            name=op.f("fk_customer_audit_customer_ref_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_audit")),
    )
    op.create_index(
        op.f("ix_customer_audit_customer_ref"), "customer_audit", ["customer_ref"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_customer_audit_customer_ref"), table_name="customer_audit")
    op.drop_table("customer_audit")
    for name in ("held_reason", "held_at", "paused_by", "paused_at"):
        op.drop_column("customers", name)
