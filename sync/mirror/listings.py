"""What ``customers list`` and ``status`` print, and the queries that read it. Pure: building a
query does no I/O (sync/mirror/reads.py runs them). Each listing's columns are one list
(``reports.Listing``); the query selects exactly those, so a column is added in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Select, and_, case, func, literal, select
from sqlalchemy.sql import ColumnElement, FromClause

from sync.mirror import reports
from sync.mirror.models import Customer, CustomerFile
from sync.mirror.reports import HealthState, Kind, Listing, ReportColumn

CUSTOMERS = Listing(
    title="customers",
    fields=(
        ReportColumn("customer_id", Kind.ID),
        ReportColumn("external_user_id", Kind.TEXT),
        ReportColumn("user_id", Kind.TEXT),
        ReportColumn("sales_id", Kind.ID),
        ReportColumn("nickname", Kind.TEXT, shortened=True),
        ReportColumn("owner_name", Kind.TEXT),
        ReportColumn("files", Kind.COUNT),
        ReportColumn("gone_at", Kind.INSTANT),
        ReportColumn("control", Kind.TEXT),
    ),
)

STATUS = Listing(
    title="customers, problems first",
    fields=(
        ReportColumn("customer", Kind.TEXT),
        ReportColumn("state", Kind.TEXT),
        ReportColumn("control", Kind.TEXT),
        ReportColumn("files", Kind.COUNT),
        ReportColumn("last_success_at", Kind.INSTANT),
        ReportColumn("last_error", Kind.TEXT, shortened=True),
    ),
)
# `status --customer ID`: one line per column, the whole last error included.
STATUS_DETAIL = Listing(
    title="customer",
    fields=(
        ReportColumn("state", Kind.TEXT),
        ReportColumn("files", Kind.COUNT),
        ReportColumn("newest_file", Kind.INSTANT),
        ReportColumn("last_success_at", Kind.INSTANT),
        ReportColumn("consecutive_failures", Kind.COUNT),
        ReportColumn("customer_id", Kind.ID),
        ReportColumn("external_user_id", Kind.TEXT),
        ReportColumn("last_attempt_at", Kind.INSTANT),
        ReportColumn("last_error_at", Kind.INSTANT),
        ReportColumn("last_error", Kind.TEXT),
    ),
)

# `status`: the recent runs (sync_runs rows, newest first).
RUNS = Listing(
    title="recent runs",
    fields=(
        ReportColumn("id", Kind.ID, heading="run"),
        ReportColumn("mode", Kind.TEXT),
        ReportColumn("status", Kind.TEXT),
        ReportColumn("started_at", Kind.INSTANT, heading="started"),
        ReportColumn("customers_ok", Kind.COUNT, heading="ok"),
        ReportColumn("customers_failed", Kind.COUNT, heading="failed"),
        ReportColumn("records_inserted", Kind.COUNT, heading="new"),
        ReportColumn("records_updated", Kind.COUNT, heading="updated"),
        ReportColumn("records_rejected", Kind.COUNT, heading="rejected"),
        ReportColumn("records_deleted", Kind.COUNT, heading="deleted"),
        ReportColumn("requests", Kind.COUNT),
    ),
)


def _live_files(ref: ColumnElement[Any]) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The live file count and newest file time of the customer whose row id is ``ref``, as
    correlated subqueries: computed only for the rows a limited listing returns, each through
    the (source_customer_id, id) index."""
    live = and_(CustomerFile.source_customer_id == ref, CustomerFile.deleted_at.is_(None))
    count = select(func.count()).where(live).scalar_subquery()
    newest = select(func.max(CustomerFile.create_time)).where(live).scalar_subquery()
    return count, newest


def _control_word(customers: FromClause) -> ColumnElement[Any]:
    """``paused`` or ``held`` (operator controls, sync/mirror/controls.py), else empty."""
    return case(
        (customers.c.paused_at.is_not(None), "paused"),
        (customers.c.held_at.is_not(None), "held"),
        else_="",
    )


def _control(ref: ColumnElement[Any]) -> ColumnElement[Any]:
    """The control word of the customer whose row id is ``ref``."""
    customers = Customer.__table__.alias("controlled")
    return select(_control_word(customers)).where(customers.c.id == ref).scalar_subquery()


def customers_query(limit: int | None) -> Select[Any]:
    files, _ = _live_files(Customer.__table__.c.id)
    computed: dict[str, ColumnElement[Any]] = {
        "files": files,
        "control": _control_word(Customer.__table__),
    }
    table = Customer.__table__.c
    columns = [
        computed[f.name].label(f.name) if f.name in computed else table[f.name]
        for f in CUSTOMERS.fields
    ]
    return select(*columns).order_by(Customer.id).limit(limit)


def customer_count_query() -> Select[Any]:
    return select(func.count()).select_from(Customer)


def _health(max_staleness_s: int) -> tuple[FromClause, ColumnElement[Any]]:
    """The report_sync_health view, and its state with ``stale`` for an ``ok`` customer whose
    last success is more than ``max_staleness_s`` seconds ago."""
    view = reports.find_report("sync_health").relation()
    state = case(
        (
            and_(
                view.c.state == HealthState.OK.value,
                view.c.staleness_seconds > literal(max_staleness_s, BigInteger()),
            ),
            HealthState.STALE.value,
        ),
        else_=view.c.state,
    )
    return view, state


def status_query(
    max_staleness_s: int, limit: int | None, refs: Sequence[int] | None = None
) -> Select[Any]:
    """Customers worst state first (``HealthState``'s order), then by row id; only ``refs``
    when given. Rows carry every column of STATUS_DETAIL except ``customer`` (a label made
    from customer_id and external_user_id)."""
    view, state = _health(max_staleness_s)
    files, newest = _live_files(view.c.customer_ref)
    severity = case(reports.SEVERITY, value=state, else_=len(reports.SEVERITY))
    query = select(
        view.c.customer_ref,
        view.c.customer_id,
        view.c.external_user_id,
        state.label("state"),
        _control(view.c.customer_ref).label("control"),
        files.label("files"),
        newest.label("newest_file"),
        view.c.last_attempt_at,
        view.c.last_success_at,
        view.c.last_error,
        view.c.last_error_at,
        view.c.consecutive_failures,
    )
    if refs is not None:
        query = query.where(view.c.customer_ref.in_(refs))
    return query.order_by(severity, view.c.customer_ref).limit(limit)


def state_counts_query(max_staleness_s: int) -> Select[Any]:
    """(state, customers) for every state that has customers."""
    view, state = _health(max_staleness_s)
    states = select(state.label("state")).select_from(view).subquery("states")
    return select(states.c.state, func.count()).group_by(states.c.state)
