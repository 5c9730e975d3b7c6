"""the file archive: customer_files.content_sha256 and archived_at, file_archive_state, and the
report_archive_coverage view

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen: the view as revision 0007 creates it. One row per (status, reason) over live files:
# archived, failed (with the last failure's reason) or pending (never tried, or tried without
# a recorded failure yet); bytes are the archived length, or the record's size text before.
_COVERAGE = """
SELECT status, reason, COUNT(*) AS files, CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) AS bytes
FROM (
    SELECT
        CASE
            WHEN f.content_sha256 IS NOT NULL THEN 'archived'
            WHEN a.last_reason IS NOT NULL THEN 'failed'
            ELSE 'pending'
        END AS status,
        CASE WHEN f.content_sha256 IS NULL THEN a.last_reason END AS reason,
        CASE
            WHEN f.content_sha256 IS NOT NULL THEN COALESCE(a.content_bytes, f.file_size_bytes)
            ELSE f.file_size_bytes
        END AS size_bytes
    FROM customer_files f
    LEFT JOIN file_archive_state a ON a.file_id = f.id
    WHERE f.deleted_at IS NULL
) AS files
GROUP BY status, reason
"""


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite does them in place, so the views over customer_files stand.
    op.add_column("customer_files", sa.Column("content_sha256", sa.String(length=64)))
    op.add_column("customer_files", sa.Column("archived_at", sa.DateTime(timezone=True)))
    op.create_table(
        "file_archive_state",
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reason", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_bytes", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["customer_files.id"],
            name=op.f("fk_file_archive_state_file_id_customer_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_file_archive_state")),
    )
    op.create_index(
        op.f("ix_file_archive_state_next_try_at"), "file_archive_state", ["next_try_at"]
    )
    op.create_index(
        op.f("ix_file_archive_state_last_reason"), "file_archive_state", ["last_reason"]
    )
    op.execute(f"CREATE VIEW report_archive_coverage AS {_COVERAGE.strip()}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS report_archive_coverage")
    op.drop_index(op.f("ix_file_archive_state_last_reason"), table_name="file_archive_state")
    op.drop_index(op.f("ix_file_archive_state_next_try_at"), table_name="file_archive_state")
    op.drop_table("file_archive_state")
    # Plain DROP COLUMN (SQLite 3.35+ does it in place): a batch rebuild of customer_files
    # would trip over the reporting views that read it.
    op.drop_column("customer_files", "archived_at")
    op.drop_column("customer_files", "content_sha256")
