"""customer discovery: customers' discovered fields, discovery_state, discovery_runs,
discovery_gaps, rejected_customers; the reporting views with customer names, and
report_customers

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02

The customers columns are plain ADD COLUMNs (SQLite does them in place). The views that gain
columns (names from discovery) are dropped and created again; ``report_customers`` is new. The
view texts here are frozen: later changes go in a new revision.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copies of the model types: a migration must not change when the models do.
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_DIALECT_EXPRESSIONS = {
    "sqlite": {
        "china_date": "date(substr(f.create_time, 1, 19), '+8 hours')",
        "china_time": "strftime('%Y-%m-%d %H:%M:%S', substr(f.create_time, 1, 19), '+8 hours')",
        "staleness": "CAST((julianday('now') - julianday(s.last_success_at)) * 86400 AS INTEGER)",
    },
    "postgresql": {
        "china_date": "CAST((f.create_time AT TIME ZONE 'UTC') + INTERVAL '8 hours' AS DATE)",
        "china_time": (
            "to_char((f.create_time AT TIME ZONE 'UTC') + INTERVAL '8 hours', "
            "'YYYY-MM-DD HH24:MI:SS')"
        ),
        "staleness": (
            "CAST(FLOOR(EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - s.last_success_at))) AS BIGINT)"
        ),
    },
}

# The views of revision 0002 in creation order, each read by the ones after it.
_OLD_VIEWS = (
    "report_files",
    "report_files_per_customer",
    "report_files_per_day",
    "report_files_per_author",
    "report_files_per_type",
    "report_customers_without_files",
    "report_sync_health",
)

_HEALTH_STATE = """CASE
        WHEN COALESCE(s.consecutive_failures, 0) > 0 THEN 'failing'
        WHEN s.pass_started_at IS NOT NULL THEN 'incomplete'
        WHEN s.last_success_at IS NOT NULL THEN 'ok'
        ELSE 'never_synced'
    END"""

_VIEWS = (
    (
        "report_files",
        """
SELECT
    f.id,
    c.id AS customer_ref,
    COALESCE(c.customer_id, f.customer_id) AS customer_id,
    c.external_user_id,
    f.create_time,
    {china_time} AS create_time_china,
    {china_date} AS china_date,
    f.file_name,
    f.file_type,
    f.file_size_bytes,
    f.file_url,
    f.operator_id,
    f.author_name,
    f.sales_id,
    c.nickname AS customer_nickname
FROM customer_files f
JOIN customers c ON c.id = f.source_customer_id
WHERE f.deleted_at IS NULL
""",
    ),
    (
        "report_files_per_customer",
        """
SELECT
    customer_ref,
    MIN(customer_id) AS customer_id,
    external_user_id,
    MAX(customer_nickname) AS nickname,
    COUNT(*) AS files,
    CAST(SUM(file_size_bytes) AS BIGINT) AS total_bytes,
    MIN(create_time) AS first_file_at,
    MAX(create_time) AS last_file_at
FROM report_files
GROUP BY customer_ref, external_user_id
""",
    ),
    (
        "report_files_per_day",
        """
SELECT
    china_date,
    COUNT(*) AS files,
    CAST(SUM(file_size_bytes) AS BIGINT) AS total_bytes,
    COUNT(DISTINCT customer_ref) AS customers
FROM report_files
WHERE china_date IS NOT NULL
GROUP BY china_date
""",
    ),
    (
        "report_files_per_author",
        """
SELECT
    operator_id,
    author_name,
    COUNT(*) AS files,
    CAST(SUM(file_size_bytes) AS BIGINT) AS total_bytes,
    COUNT(DISTINCT customer_ref) AS customers,
    MIN(create_time) AS first_file_at,
    MAX(create_time) AS last_file_at
FROM report_files
GROUP BY operator_id, author_name
""",
    ),
    (
        "report_files_per_type",
        """
SELECT
    file_type,
    COUNT(*) AS files,
    CAST(SUM(file_size_bytes) AS BIGINT) AS total_bytes,
    COUNT(DISTINCT customer_ref) AS customers,
    MIN(create_time) AS first_file_at,
    MAX(create_time) AS last_file_at
FROM report_files
GROUP BY file_type
""",
    ),
    (
        "report_customers_without_files",
        """
SELECT
    c.id AS customer_ref,
    c.customer_id,
    c.external_user_id,
    c.user_id,
    c.sales_id,
    (SELECT COUNT(*) FROM customer_files d
     WHERE d.source_customer_id = c.id AND d.deleted_at IS NOT NULL) AS deleted_files,
    s.last_success_at,
    c.nickname,
    c.owner_name
FROM customers c
LEFT JOIN customer_sync_state s ON s.customer_ref = c.id
WHERE NOT EXISTS (
    SELECT 1 FROM customer_files f
    WHERE f.source_customer_id = c.id AND f.deleted_at IS NULL
)
""",
    ),
    (
        "report_sync_health",
        """
SELECT
    c.id AS customer_ref,
    c.customer_id,
    c.external_user_id,
    {health_state} AS state,
    s.last_attempt_at,
    s.last_success_at,
    {staleness} AS staleness_seconds,
    s.last_error,
    s.last_error_at,
    COALESCE(s.consecutive_failures, 0) AS consecutive_failures,
    c.nickname
FROM customers c
LEFT JOIN customer_sync_state s ON s.customer_ref = c.id
""",
    ),
    (
        "report_customers",
        """
SELECT
    c.id AS customer_ref,
    c.customer_id,
    c.external_user_id,
    c.nickname,
    c.remark,
    c.owner_name,
    c.user_id,
    c.sales_id,
    c.tanma_create_time,
    c.last_follow_time,
    c.is_friend,
    c.delete_status,
    c.first_seen_at,
    c.last_seen_at,
    c.gone_at,
    (SELECT COUNT(*) FROM customer_files f
     WHERE f.source_customer_id = c.id AND f.deleted_at IS NULL) AS files,
    (SELECT MAX(f.create_time) FROM customer_files f
     WHERE f.source_customer_id = c.id AND f.deleted_at IS NULL) AS last_file_at,
    {health_state} AS sync_state,
    s.last_success_at,
    {staleness} AS staleness_seconds,
    s.last_error
FROM customers c
LEFT JOIN customer_sync_state s ON s.customer_ref = c.id
""",
    ),
)


def _expressions() -> dict[str, str]:
    dialect = op.get_bind().dialect.name
    expressions = _DIALECT_EXPRESSIONS.get(dialect)
    if expressions is None:
        raise NotImplementedError(
            f"reporting views are written for SQLite and PostgreSQL only, not {dialect}"
        )
    return expressions


def _instant_columns(*names: str) -> list[sa.Column[Any]]:
    return [sa.Column(name, INSTANT, nullable=True) for name in names]


def upgrade() -> None:
    expressions = _expressions()
    for name in reversed(_OLD_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    columns: list[sa.Column[Any]] = [
        sa.Column("nickname", sa.Text(), nullable=True),
        sa.Column("remark", sa.Text(), nullable=True),
        sa.Column("owner_name", sa.Text(), nullable=True),
        sa.Column("tanma_create_time", INSTANT, nullable=True),
        sa.Column("last_follow_time", INSTANT, nullable=True),
        sa.Column("is_friend", sa.Boolean(), nullable=True),
        sa.Column("delete_status", sa.Integer(), nullable=True),
        sa.Column("raw", DOCUMENT, nullable=True),
        *_instant_columns("first_seen_at", "last_seen_at", "gone_at"),
    ]
    for column in columns:
        op.add_column("customers", column)
    op.create_index(op.f("ix_customers_tanma_create_time"), "customers", ["tanma_create_time"])
    op.create_table(
        "discovery_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("walk", sa.Text(), nullable=True),
        sa.Column("run_id", KEY, nullable=True),
        sa.Column("walk_started_at", INSTANT, nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", INSTANT, nullable=True),
        sa.Column("lease_hostname", sa.String(length=255), nullable=True),
        sa.Column("lease_pid", sa.Integer(), nullable=True),
        sa.Column("lease_process_space", sa.String(length=64), nullable=True),
        sa.Column("last_finished_at", INSTANT, nullable=True),
        sa.Column("last_full_finished_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_discovery_state_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discovery_state")),
    )
    op.create_table(
        "discovery_runs",
        sa.Column("run_id", KEY, autoincrement=False, nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("found", "new", "updated", "unchanged", "gone", "rejected")
        ),
        *(
            sa.Column(name, sa.Integer(), nullable=False)
            for name in ("windows", "windows_split", "rewalks", "gaps")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_discovery_runs_run_id_sync_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_discovery_runs")),
    )
    op.create_table(
        "discovery_gaps",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("run_id", KEY, nullable=True),
        *_instant_columns("window_start", "window_end"),
        sa.Column("total_count", sa.BigInteger(), nullable=False),
        sa.Column("fetched", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_discovery_gaps_run_id_sync_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discovery_gaps")),
    )
    op.create_index(op.f("ix_discovery_gaps_run_id"), "discovery_gaps", ["run_id"])
    op.create_table(
        "rejected_customers",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("run_id", KEY, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        *(
            sa.Column(name, INSTANT, nullable=False)
            for name in ("first_rejected_at", "last_rejected_at")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name=op.f("fk_rejected_customers_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_customers")),
        sa.UniqueConstraint("payload_sha256", name=op.f("uq_rejected_customers_payload_sha256")),
    )
    for name, body in _VIEWS:
        text = body.format(**expressions, health_state=_HEALTH_STATE).strip()
        op.execute(f"CREATE VIEW {name} AS {text}")


def downgrade() -> None:
    for name, _ in reversed(_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("rejected_customers")
    op.drop_index(op.f("ix_discovery_gaps_run_id"), table_name="discovery_gaps")
    op.drop_table("discovery_gaps")
    op.drop_table("discovery_runs")
    op.drop_table("discovery_state")
    op.drop_index(op.f("ix_customers_tanma_create_time"), table_name="customers")
    with op.batch_alter_table("customers") as batch:
        for name in (
            "gone_at",
            "last_seen_at",
            "first_seen_at",
            "raw",
            "delete_status",
            "is_friend",
            "last_follow_time",
            "tanma_create_time",
            "owner_name",
            "remark",
            "nickname",
        ):
            batch.drop_column(name)
    _reporting_views_revision().upgrade()


def _reporting_views_revision() -> ModuleType:
    """Revision 0002, whose upgrade creates the views as they were before this revision."""
    path = Path(__file__).with_name("20261124_0002_reporting_views.py")
    spec = importlib.util.spec_from_file_location("tanma_revision_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
