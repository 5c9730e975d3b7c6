"""sync_runs.hostname, pid, process_space: the process that ran each pass

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite does them in place. Older rows keep NULL owners, which no later
    # run can prove dead, so they are left as they are.
    op.add_column("sync_runs", sa.Column("hostname", sa.String(length=255), nullable=True))
    op.add_column("sync_runs", sa.Column("pid", sa.Integer(), nullable=True))
    op.add_column("sync_runs", sa.Column("process_space", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("process_space")
        batch.drop_column("pid")
        batch.drop_column("hostname")
