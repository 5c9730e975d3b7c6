"""The mirror's tables. Alembic migrations create them; a test checks the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: timestamptz on PostgreSQL; on SQLite, which has no zone, always UTC text.

    Values go in aware (any zone) and come out aware in UTC on both databases.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC timestamp column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-numbers a column declared exactly INTEGER PRIMARY KEY.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")
JSONDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Customer(Base):
    """A customer whose files are mirrored; known by Tanmarket id, WeCom external id, or both."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(
            "customer_id IS NOT NULL OR external_user_id IS NOT NULL", name="identified"
        ),
        # The console's "gone" filter (migration 0010).
        Index(None, "gone_at"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    customer_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    external_user_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    user_id: Mapped[str | None] = mapped_column(String(128))
    sales_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)
    # Filled by `customers discover` (migration 0006); NULL for customers only ever imported.
    nickname: Mapped[str | None] = mapped_column(Text)
    remark: Mapped[str | None] = mapped_column(Text)
    owner_name: Mapped[str | None] = mapped_column(Text)
    tanma_create_time: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_follow_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_friend: Mapped[bool | None] = mapped_column(Boolean)
    delete_status: Mapped[int | None] = mapped_column(Integer)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Operator controls (migration 0009): a paused customer is skipped by passes and sweeps; a
    # held one had a full reconcile's deletions withheld by the mass-delete guard.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_by: Mapped[str | None] = mapped_column(String(128))
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    held_reason: Mapped[str | None] = mapped_column(Text)


class CustomerFile(Base):
    """One file record, keyed by the API's record id."""

    __tablename__ = "customer_files"
    __table_args__ = (
        Index(None, "customer_id", "create_time"),
        Index(None, "create_time"),
        Index(None, "source_customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The customers row whose file list this record came from (used to spot vanished records).
    source_customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    corp_id: Mapped[str | None] = mapped_column(Text)
    sales_id: Mapped[int | None] = mapped_column(BigInteger)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    create_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    file_name: Mapped[str | None] = mapped_column(Text)
    file_url: Mapped[str | None] = mapped_column(Text)
    file_type: Mapped[str | None] = mapped_column(String(32))
    file_size_text: Mapped[str | None] = mapped_column(Text)
    file_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    file_store_id: Mapped[str | None] = mapped_column(Text)
    operator_id: Mapped[int | None] = mapped_column(BigInteger)
    author_name: Mapped[str | None] = mapped_column(Text)
    follow_content: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The file's bytes in the archive (migration 0007): lowercase SHA-256 hex, and when.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FileArchiveState(Base):
    """The archive's progress on one file: tries, the last failure, when it is due again, and
    which archiver holds it now (a claim past ``claim_expires_at`` belongs to nobody)."""

    __tablename__ = "file_archive_state"
    __table_args__ = (Index(None, "next_try_at"), Index(None, "last_reason"))

    file_id: Mapped[int] = mapped_column(
        ForeignKey("customer_files.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_reason: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    content_bytes: Mapped[int | None] = mapped_column(BigInteger)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerSyncState(Base):
    """One small row per customer: the persisted ``CustomerCursor`` and the last outcome."""

    __tablename__ = "customer_sync_state"
    # The console's state filters and staleness histogram (migration 0010).
    __table_args__ = (Index(None, "last_success_at"), Index(None, "consecutive_failures"))

    customer_ref: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    high_water_id: Mapped[int | None] = mapped_column(BigInteger)
    pass_cursor_id: Mapped[int | None] = mapped_column(BigInteger)
    pass_top_id: Mapped[int | None] = mapped_column(BigInteger)
    pass_floor_id: Mapped[int | None] = mapped_column(BigInteger)
    pass_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pass_full: Mapped[bool] = mapped_column(Boolean, default=False)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)


class SyncRun(Base):
    """One pass of `run`, `backfill` or `backfill --full` over the selected customers."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index(None, "started_at"),)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(String(16))
    # running | ok | partial | failed | interrupted | abandoned (owner died while running)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    customers_total: Mapped[int] = mapped_column(Integer, default=0)
    customers_ok: Mapped[int] = mapped_column(Integer, default=0)
    customers_failed: Mapped[int] = mapped_column(Integer, default=0)
    records_inserted: Mapped[int] = mapped_column(BigInteger, default=0)
    records_updated: Mapped[int] = mapped_column(BigInteger, default=0)
    records_unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    records_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    records_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    retries: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error_summary: Mapped[str | None] = mapped_column(Text)
    # The daemon that ran this pass (SYNC_WORKER_ID), or a command-line pass on PostgreSQL
    # (mode@host:pid, a member of the fleet); NULL for one on SQLite.
    worker_id: Mapped[str | None] = mapped_column(String(128))
    # The process that ran it (migration 0004), so a later run can tell a dead owner's row.
    hostname: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    process_space: Mapped[str | None] = mapped_column(String(64))


class RejectedRecordRow(Base):
    """An item set aside, verbatim, with the reason; one row per distinct payload per customer."""

    __tablename__ = "rejected_records"
    __table_args__ = (UniqueConstraint("customer_ref", "payload_sha256"),)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    customer_ref: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    record_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    first_rejected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_rejected_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerSchedule(Base):
    """The daemon's plan for one customer: its poll interval, when it is next due, and the
    lease of the daemon working it (a lease past ``lease_expires_at`` belongs to nobody)."""

    __tablename__ = "customer_schedule"
    __table_args__ = (Index(None, "next_due_at"), Index(None, "lease_owner"))

    customer_ref: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    poll_interval_s: Mapped[float | None] = mapped_column(Double)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_new_files_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    full_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_full_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_worker_id: Mapped[str | None] = mapped_column(String(128))


class SyncWorker(Base):
    """A live daemon. Workers split the app's rate limit by counting the rows whose heartbeat
    is fresh; a crashed worker's row goes stale and stops counting. A newcomer spends nothing
    until every other live row's heartbeat is later than its ``started_at``."""

    __tablename__ = "sync_workers"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DiscoveryState(Base):
    """The one row of discovery's own state: the walk under way (committed with each page of
    customers, so a killed discovery resumes), and the lease of whoever runs it."""

    __tablename__ = "discovery_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    walk: Mapped[str | None] = mapped_column(Text)  # DiscoveryWalk.to_json, as JSON text
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    walk_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The holder's process, so a discovery killed on this host is taken over at once.
    lease_hostname: Mapped[str | None] = mapped_column(String(255))
    lease_pid: Mapped[int | None] = mapped_column(Integer)
    lease_process_space: Mapped[str | None] = mapped_column(String(64))
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_full_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DiscoveryRun(Base):
    """What one discovery (a ``sync_runs`` row of mode ``discover`` or ``discover_full``) did."""

    __tablename__ = "discovery_runs"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    full: Mapped[bool] = mapped_column(Boolean)
    found: Mapped[int] = mapped_column(BigInteger, default=0)
    new: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    gone: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    windows: Mapped[int] = mapped_column(Integer, default=0)
    windows_split: Mapped[int] = mapped_column(Integer, default=0)
    rewalks: Mapped[int] = mapped_column(Integer, default=0)
    gaps: Mapped[int] = mapped_column(Integer, default=0)


class DiscoveryGap(Base):
    """Customers a discovery could not be sure to have found: the window, how many, why."""

    __tablename__ = "discovery_gaps"
    __table_args__ = (Index(None, "run_id"),)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_count: Mapped[int] = mapped_column(BigInteger)
    fetched: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RejectedCustomerRow(Base):
    """A search item set aside, verbatim, with the reason; one row per distinct payload."""

    __tablename__ = "rejected_customers"

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    first_rejected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_rejected_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PushInbox(Base):
    """A push, committed before it is answered: the decrypted text as received, and what
    processing (after the answer) made of it. One row per ``msgId``, so a repeat has no effect."""

    __tablename__ = "push_inbox"
    __table_args__ = (Index(None, "processed_at", "id"), Index(None, "customer_ref", "synced_at"))

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_by: Mapped[str | None] = mapped_column(String(128))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # sync | add | gone | none | unknown_customer (PushOutcome in sync/mirror/push_inbox.py)
    outcome: Mapped[str | None] = mapped_column(String(32))
    customer_ref: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL")
    )
    # When a sync of the customer that began after this push was processed finished.
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PushRejection(Base):
    """Pushes refused before the inbox, counted by reason (their bodies are not kept)."""

    __tablename__ = "push_rejections"

    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_detail: Mapped[str | None] = mapped_column(Text)


class CustomerAudit(Base):
    """What an operator did to one customer (reset, pause, resume, reconcile): who, when, and
    the customer's state before and after, as JSON text."""

    __tablename__ = "customer_audit"

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    customer_ref: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
