"""reporting views: report_files and the per-customer, per-day, per-author, per-type,
customers-without-files and sync-health summaries over it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

The views mean the same on SQLite and PostgreSQL; only three expressions differ in spelling
(the China-local date and time of an instant, and seconds since an instant). China time is a
fixed +08:00 (no daylight saving since 1991, and the API's ``createTime`` is parsed the same
way), so it is written as "UTC plus eight hours", never through a zone database or the session's
time zone. docs/schema.md documents every view; tests/integration/test_views.py checks that both
databases return the same rows.

A later migration that rebuilds or retypes a table these views read (SQLite batch mode, or
ALTER COLUMN TYPE on PostgreSQL) must drop the views first and create them again after.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen: these texts are the views as revision 0002 creates them; later changes go in a new
# revision, never here.
_DIALECT_EXPRESSIONS = {
    "sqlite": {
        # SQLite keeps these instants as UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'). Its date
        # functions round fractions to milliseconds, which would move 15:59:59.9995 UTC onto the
        # next China day; cutting the text to whole seconds truncates, as PostgreSQL does.
        "china_date": "date(substr(f.create_time, 1, 19), '+8 hours')",
        "china_time": "strftime('%Y-%m-%d %H:%M:%S', substr(f.create_time, 1, 19), '+8 hours')",
        "staleness": ("CAST((julianday('now') - julianday(s.last_success_at)) * 86400 AS INTEGER)"),
    },
    "postgresql": {
        # AT TIME ZONE 'UTC' turns timestamptz into UTC wall time whatever the session's zone.
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

# (name, body) in creation order; each view may read the ones before it.
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
    f.sales_id
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
    s.last_success_at
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
    CASE
        WHEN COALESCE(s.consecutive_failures, 0) > 0 THEN 'failing'
        WHEN s.pass_started_at IS NOT NULL THEN 'incomplete'
        WHEN s.last_success_at IS NOT NULL THEN 'ok'
        ELSE 'never_synced'
    END AS state,
    s.last_attempt_at,
    s.last_success_at,
    {staleness} AS staleness_seconds,
    s.last_error,
    s.last_error_at,
    COALESCE(s.consecutive_failures, 0) AS consecutive_failures
FROM customers c
LEFT JOIN customer_sync_state s ON s.customer_ref = c.id
""",
    ),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    expressions = _DIALECT_EXPRESSIONS.get(dialect)
    if expressions is None:
        raise NotImplementedError(
            f"reporting views are written for SQLite and PostgreSQL only, not {dialect}"
        )
    for name, body in _VIEWS:
        op.execute(f"CREATE VIEW {name} AS {body.format(**expressions).strip()}")


def downgrade() -> None:
    for name, _ in reversed(_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
