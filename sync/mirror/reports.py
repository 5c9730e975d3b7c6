"""The reporting views as ``tanma-sync report`` shows them. Pure: which reports exist, the query
that reads one (building a query does no I/O; ``MirrorStore.report_rows`` runs it), their
order, and rendering rows as a rich table, CSV or JSON.

The views themselves are created by migration 0002 and documented in docs/schema.md. ``--since``
cannot be pushed into a view, so for the reports that count files it re-runs the view's
aggregation over ``report_files`` restricted to the recent files; tests/integration/test_views.py
checks that, without a restriction, that query returns exactly what the view does.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum, StrEnum
from typing import Any, Protocol

from rich.cells import cell_len
from rich.table import Table
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Select,
    Text,
    cast,
    column,
    distinct,
    func,
    select,
    table,
)
from sqlalchemy.sql import ColumnElement, FromClause, TableClause
from sqlalchemy.types import TypeEngine

from sync.domain.chinatime import CHINA_TZ, format_china_time
from sync.mirror.models import UTCDateTime

Row = Mapping[str, Any]


class ReportUsageError(ValueError):
    """A report name, date or format the user got wrong; the message names it."""


class Kind(Enum):
    """What a column holds, which decides how it is read and shown."""

    COUNT = "count"  # a number of things: 1,234 in a table
    ID = "id"  # an identifier: printed as is
    BYTES = "bytes"
    TEXT = "text"
    INSTANT = "instant"  # an aware datetime: China time in every format
    DATE = "date"  # a China-local calendar date
    SECONDS = "seconds"  # a duration: "3h 07m" in a table
    FLAG = "flag"  # true or false: "yes"/"no" in a table


_SQL_TYPES: dict[Kind, TypeEngine[Any]] = {
    Kind.COUNT: BigInteger(),
    Kind.ID: BigInteger(),
    Kind.BYTES: BigInteger(),
    Kind.TEXT: Text(),
    Kind.INSTANT: UTCDateTime(),
    Kind.DATE: Date(),
    Kind.SECONDS: BigInteger(),
    Kind.FLAG: Boolean(),
}
_NUMERIC = frozenset({Kind.COUNT, Kind.BYTES, Kind.SECONDS})


@dataclass(frozen=True, slots=True)
class ReportColumn:
    name: str
    kind: Kind
    # In a table: a long text that may be cut short (with …) so the table fits the terminal.
    # Every other column is shown whole; CSV and JSON always carry the whole value.
    shortened: bool = False
    # A shorter table heading than the name (CSV and JSON keep the name).
    heading: str | None = None

    @property
    def title(self) -> str:
        """The table heading: instants say their zone, durations drop the unit."""
        name = self.heading or self.name
        if self.kind is Kind.INSTANT:
            return f"{name} (UTC+8)"
        if self.kind is Kind.SECONDS:
            return name.removesuffix("_seconds")
        return name


class Since(Enum):
    """What ``--since DATE`` does to a report."""

    ROWS = "rows"  # rows carry china_date: keep those on or after DATE
    FILES = "files"  # aggregate only the files created on or after DATE
    NOT_APPLICABLE = "not applicable"


class Tabular(Protocol):
    """Anything printed as rows of named columns: a report, ``customers list``, ``status``."""

    @property
    def title(self) -> str: ...

    @property
    def fields(self) -> tuple[ReportColumn, ...]: ...

    @property
    def table_fields(self) -> tuple[ReportColumn, ...]: ...


@dataclass(frozen=True, slots=True)
class Listing:
    """Rows a command prints (``customers list``, ``status``). Its columns are this one list:
    the query, the table, CSV and JSON all follow it, so a new column is added here once."""

    title: str
    fields: tuple[ReportColumn, ...]

    @property
    def table_fields(self) -> tuple[ReportColumn, ...]:
        return self.fields


@dataclass(frozen=True, slots=True)
class Report:
    name: str  # as given to `tanma-sync report`
    view: str  # the SQL view
    summary: str
    fields: tuple[ReportColumn, ...]
    since: Since
    sort_key: Callable[[Row], tuple[Any, ...]]
    # For Since.FILES: the view's aggregation over a (filtered) report_files relation.
    aggregate: Callable[[FromClause], Select[Any]] | None = None
    # The columns a terminal table shows, when not all of them fit (CSV and JSON have all).
    table_columns: tuple[str, ...] | None = None
    # The report's order as SQL, when it needs no text collation (which differs between the
    # databases): then ``--limit`` is applied by the database instead of after reading all.
    sql_order: Callable[[FromClause], list[ColumnElement[Any]]] | None = None

    @property
    def title(self) -> str:
        return f"{self.view}: {self.summary}"

    @property
    def table_fields(self) -> tuple[ReportColumn, ...]:
        if self.table_columns is None:
            return self.fields
        return tuple(f for f in self.fields if f.name in self.table_columns)

    def relation(self) -> TableClause:
        """The view as a typed selectable, so values come back as Python types on both
        databases (SQLite hands over instants and dates as text)."""
        return table(self.view, *(column(f.name, _SQL_TYPES[f.kind]) for f in self.fields))


def _last_if_none(value: Any) -> tuple[bool, Any]:
    """A sort key part that puts NULLs after every value, whatever the value's type."""
    return (value is None, 0 if value is None else value)


def _per_customer(files: FromClause) -> Select[Any]:
    return select(
        files.c.customer_ref,
        func.min(files.c.customer_id).label("customer_id"),
        files.c.external_user_id,
        func.max(files.c.customer_nickname).label("nickname"),
        *_file_measures(files, with_customers=False),
    ).group_by(files.c.customer_ref, files.c.external_user_id)


def _per_author(files: FromClause) -> Select[Any]:
    return select(
        files.c.operator_id, files.c.author_name, *_file_measures(files, with_customers=True)
    ).group_by(files.c.operator_id, files.c.author_name)


def _per_type(files: FromClause) -> Select[Any]:
    return select(files.c.file_type, *_file_measures(files, with_customers=True)).group_by(
        files.c.file_type
    )


def _file_measures(files: FromClause, *, with_customers: bool) -> list[ColumnElement[Any]]:
    measures: list[ColumnElement[Any]] = [
        func.count().label("files"),
        # PostgreSQL sums bigints into numeric; the views cast back, and so does this.
        cast(func.sum(files.c.file_size_bytes), BigInteger).label("total_bytes"),
    ]
    if with_customers:
        measures.append(func.count(distinct(files.c.customer_ref)).label("customers"))
    measures += [
        func.min(files.c.create_time).label("first_file_at"),
        func.max(files.c.create_time).label("last_file_at"),
    ]
    return measures


_FIRST_LAST = (
    ReportColumn("first_file_at", Kind.INSTANT),
    ReportColumn("last_file_at", Kind.INSTANT),
)


class HealthState(StrEnum):
    """The words for a customer's sync state, worst first: the ``state`` column of the
    report_sync_health view (migration 0002; a test checks the view uses exactly these), and
    ``stale``, which ``status`` adds for an ``ok`` customer whose last success is older than
    SYNC_MAX_STALENESS (a setting, so no view can know it)."""

    FAILING = "failing"
    STALE = "stale"
    INCOMPLETE = "incomplete"
    NEVER_SYNCED = "never_synced"
    OK = "ok"


SEVERITY = {state.value: rank for rank, state in enumerate(HealthState)}
_ARCHIVE_ORDER = {"failed": 0, "pending": 1, "archived": 2}

FILES = Report(
    name="files",
    view="report_files",
    summary="live files, one row each, newest first",
    fields=(
        ReportColumn("id", Kind.ID),
        ReportColumn("customer_ref", Kind.ID),
        ReportColumn("customer_id", Kind.ID),
        ReportColumn("external_user_id", Kind.TEXT),
        ReportColumn("create_time", Kind.INSTANT),
        ReportColumn("create_time_china", Kind.TEXT),
        ReportColumn("china_date", Kind.DATE),
        ReportColumn("file_name", Kind.TEXT, shortened=True),
        ReportColumn("file_type", Kind.TEXT),
        ReportColumn("file_size_bytes", Kind.BYTES),
        ReportColumn("file_url", Kind.TEXT, shortened=True),
        ReportColumn("operator_id", Kind.ID),
        ReportColumn("author_name", Kind.TEXT, shortened=True),
        ReportColumn("sales_id", Kind.ID),
        ReportColumn("customer_nickname", Kind.TEXT),
    ),
    since=Since.ROWS,
    sort_key=lambda r: (
        _last_if_none(-r["create_time"].timestamp() if r["create_time"] else None),
        -r["id"],
    ),
    table_columns=(
        "id",
        "customer_id",
        "create_time",
        "file_name",
        "file_type",
        "file_size_bytes",
        "author_name",
    ),
    # The same order as sort_key: newest first, files without a time last.
    sql_order=lambda v: [v.c.create_time.is_(None), v.c.create_time.desc(), v.c.id.desc()],
)

REPORTS: tuple[Report, ...] = (
    Report(
        name="files_per_customer",
        view="report_files_per_customer",
        summary="live files per customer, most files first",
        fields=(
            ReportColumn("customer_ref", Kind.ID),
            ReportColumn("customer_id", Kind.ID),
            ReportColumn("external_user_id", Kind.TEXT),
            ReportColumn("nickname", Kind.TEXT),
            ReportColumn("files", Kind.COUNT),
            ReportColumn("total_bytes", Kind.BYTES),
            *_FIRST_LAST,
        ),
        since=Since.FILES,
        sort_key=lambda r: (-r["files"], r["customer_ref"]),
        aggregate=_per_customer,
    ),
    Report(
        name="files_per_day",
        view="report_files_per_day",
        summary="live files per China-local day (UTC+8) of create_time",
        fields=(
            ReportColumn("china_date", Kind.DATE),
            ReportColumn("files", Kind.COUNT),
            ReportColumn("total_bytes", Kind.BYTES),
            ReportColumn("customers", Kind.COUNT),
        ),
        since=Since.ROWS,
        sort_key=lambda r: (r["china_date"],),
    ),
    Report(
        name="files_per_author",
        view="report_files_per_author",
        summary="live files per operator and author name, most files first",
        fields=(
            ReportColumn("operator_id", Kind.ID),
            ReportColumn("author_name", Kind.TEXT, shortened=True),
            ReportColumn("files", Kind.COUNT),
            ReportColumn("total_bytes", Kind.BYTES),
            ReportColumn("customers", Kind.COUNT),
            *_FIRST_LAST,
        ),
        since=Since.FILES,
        sort_key=lambda r: (
            -r["files"],
            _last_if_none(r["operator_id"]),
            _last_if_none(r["author_name"]),
        ),
        aggregate=_per_author,
    ),
    Report(
        name="files_per_type",
        view="report_files_per_type",
        summary="live files per file type, most files first",
        fields=(
            ReportColumn("file_type", Kind.TEXT),
            ReportColumn("files", Kind.COUNT),
            ReportColumn("total_bytes", Kind.BYTES),
            ReportColumn("customers", Kind.COUNT),
            *_FIRST_LAST,
        ),
        since=Since.FILES,
        sort_key=lambda r: (-r["files"], _last_if_none(r["file_type"])),
        aggregate=_per_type,
    ),
    Report(
        name="customers_without_files",
        view="report_customers_without_files",
        summary="customers with no live file (last_success_at empty: never synced yet)",
        fields=(
            ReportColumn("customer_ref", Kind.ID),
            ReportColumn("customer_id", Kind.ID),
            ReportColumn("external_user_id", Kind.TEXT),
            ReportColumn("user_id", Kind.TEXT),
            ReportColumn("sales_id", Kind.ID),
            ReportColumn("deleted_files", Kind.COUNT),
            ReportColumn("last_success_at", Kind.INSTANT),
            ReportColumn("nickname", Kind.TEXT),
            ReportColumn("owner_name", Kind.TEXT),
        ),
        since=Since.NOT_APPLICABLE,
        sort_key=lambda r: (r["customer_ref"],),
    ),
    Report(
        name="sync_health",
        view="report_sync_health",
        summary="sync state per customer, failing first",
        fields=(
            ReportColumn("customer_ref", Kind.ID),
            ReportColumn("customer_id", Kind.ID),
            ReportColumn("external_user_id", Kind.TEXT),
            ReportColumn("state", Kind.TEXT),
            ReportColumn("last_attempt_at", Kind.INSTANT),
            ReportColumn("last_success_at", Kind.INSTANT),
            ReportColumn("staleness_seconds", Kind.SECONDS),
            ReportColumn("last_error", Kind.TEXT, shortened=True),
            ReportColumn("last_error_at", Kind.INSTANT),
            ReportColumn("consecutive_failures", Kind.COUNT),
            ReportColumn("nickname", Kind.TEXT),
        ),
        since=Since.NOT_APPLICABLE,
        sort_key=lambda r: (SEVERITY.get(r["state"], len(SEVERITY)), r["customer_ref"]),
    ),
    Report(
        name="customers",
        view="report_customers",
        summary="every customer: discovered fields, live files and sync health, by customer",
        fields=(
            ReportColumn("customer_ref", Kind.ID),
            ReportColumn("customer_id", Kind.ID),
            ReportColumn("external_user_id", Kind.TEXT),
            ReportColumn("nickname", Kind.TEXT),
            ReportColumn("remark", Kind.TEXT),
            ReportColumn("owner_name", Kind.TEXT),
            ReportColumn("user_id", Kind.TEXT),
            ReportColumn("sales_id", Kind.ID),
            ReportColumn("tanma_create_time", Kind.INSTANT),
            ReportColumn("last_follow_time", Kind.INSTANT),
            ReportColumn("is_friend", Kind.FLAG),
            ReportColumn("delete_status", Kind.ID),
            ReportColumn("first_seen_at", Kind.INSTANT),
            ReportColumn("last_seen_at", Kind.INSTANT),
            ReportColumn("gone_at", Kind.INSTANT),
            ReportColumn("files", Kind.COUNT),
            ReportColumn("last_file_at", Kind.INSTANT),
            ReportColumn("sync_state", Kind.TEXT),
            ReportColumn("last_success_at", Kind.INSTANT),
            ReportColumn("staleness_seconds", Kind.SECONDS),
            ReportColumn("last_error", Kind.TEXT),
        ),
        since=Since.NOT_APPLICABLE,
        sort_key=lambda r: (r["customer_ref"],),
    ),
    Report(
        name="archive_coverage",
        view="report_archive_coverage",
        summary="the file archive: live files archived, pending and failed (by reason), bytes",
        fields=(
            ReportColumn("status", Kind.TEXT),
            ReportColumn("reason", Kind.TEXT),
            ReportColumn("files", Kind.COUNT),
            ReportColumn("bytes", Kind.BYTES),
        ),
        since=Since.NOT_APPLICABLE,
        sort_key=lambda r: (_ARCHIVE_ORDER.get(r["status"], 3), r["reason"] or ""),
    ),
    FILES,
)
DEFAULT_REPORT = REPORTS[0]
REPORT_NAMES = tuple(r.name for r in REPORTS)


class OutputFormat(Enum):
    TABLE = "table"
    CSV = "csv"
    # Excel takes a CSV without a byte-order mark for the ANSI code page and garbles Chinese
    # names; with one (and CRLF line ends) it opens the file as UTF-8 by double-click.
    EXCEL = "excel"
    JSON = "json"


# -- choosing ------------------------------------------------------------------------------


def find_report(name: str | None) -> Report:
    """The report called ``name`` (or its view's name); files_per_customer when None."""
    if name is None:
        return DEFAULT_REPORT
    wanted = name.strip().lower().replace("-", "_")
    for report in REPORTS:
        if wanted in (report.name, report.view):
            return report
    raise ReportUsageError(f"no report named {name!r}; choose one of: {', '.join(REPORT_NAMES)}")


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_since(text: str) -> date:
    """A China-local calendar date written YYYY-MM-DD."""
    if _ISO_DATE.fullmatch(text.strip()):
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            pass
    raise ReportUsageError(
        f"--since {text!r} is not a date: write YYYY-MM-DD (a China-local date, e.g. 2024-03-01)"
    )


def parse_format(text: str | None, stdout_is_terminal: bool) -> OutputFormat:
    """The format asked for, else a table for a person at a terminal and CSV for a pipe."""
    if text is None:
        return OutputFormat.TABLE if stdout_is_terminal else OutputFormat.CSV
    try:
        return OutputFormat(text.strip().lower())
    except ValueError:
        choices = ", ".join(f.value for f in OutputFormat)
        raise ReportUsageError(f"--format {text!r}: choose one of {choices}") from None


def report_query(report: Report, since: date | None = None) -> Select[Any]:
    """The query that reads ``report``, from ``since`` (China-local date) on when given."""
    view = report.relation()
    if since is None:
        return select(*view.c)
    if report.since is Since.ROWS:
        return select(*view.c).where(view.c.china_date >= since)
    if report.since is Since.FILES and report.aggregate is not None:
        files = FILES.relation()
        recent = select(*files.c).where(files.c.china_date >= since).subquery("recent_files")
        return report.aggregate(recent)
    takes = ", ".join(r.name for r in REPORTS if r.since is not Since.NOT_APPLICABLE)
    raise ReportUsageError(
        f"report {report.name} does not take --since: it shows every customer as of now "
        f"(--since applies to {takes})"
    )


def limited_query(report: Report, query: Select[Any], limit: int) -> Select[Any] | None:
    """``query``'s first ``limit`` rows in the report's order, read by the database; None when
    the order needs Python (``ordered``) because it compares text."""
    if report.sql_order is None:
        return None
    rows = query.subquery("report_rows")
    return select(*rows.c).order_by(*report.sql_order(rows)).limit(limit)


def count_query(query: Select[Any]) -> Select[Any]:
    """How many rows ``query`` returns."""
    return select(func.count()).select_from(query.subquery("counted"))


def ordered(report: Report, rows: Sequence[Row]) -> list[Row]:
    """Rows in the report's order, decided here so both databases print the same sequence
    (their text collations differ)."""
    return sorted(rows, key=report.sort_key)


# -- rendering -----------------------------------------------------------------------------


def plain_value(kind: Kind, value: Any) -> Any:
    """A value for CSV and JSON: instants as ISO 8601 in China time with the offset, dates as
    YYYY-MM-DD, numbers as numbers, NULL as None."""
    if value is None:
        return None
    if kind is Kind.INSTANT and isinstance(value, datetime):
        return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")
    if kind is Kind.DATE and isinstance(value, date):
        return value.isoformat()
    return value


def cell_text(kind: Kind, value: Any) -> str:
    """A value as a person reads it in a table."""
    if value is None:
        return ""
    if kind in (Kind.COUNT, Kind.BYTES):
        return f"{value:,}"
    if kind is Kind.SECONDS:
        return human_seconds(value)
    if kind is Kind.FLAG:
        return "yes" if value else "no"
    if kind is Kind.INSTANT and isinstance(value, datetime):
        return format_china_time(value)
    if kind is Kind.DATE and isinstance(value, date):
        return value.isoformat()
    return str(value)


def human_seconds(seconds: int) -> str:
    """``45s``, ``12m 05s``, ``3h 07m``, ``4d 02h``: the two largest units."""
    if seconds < 0:
        return "-" + human_seconds(-seconds)
    minutes, secs = divmod(int(seconds), 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d {hrs:02d}h"
    if hours:
        return f"{hours}h {mins:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def to_csv(report: Tabular, rows: Sequence[Row], *, for_excel: bool = False) -> str:
    """A header line of column names, then one line per row; NULL is an empty field. For
    Excel: a UTF-8 byte-order mark first and CRLF line ends."""
    buffer = io.StringIO()
    if for_excel:
        buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n" if for_excel else "\n")
    writer.writerow([f.name for f in report.fields])
    for row in rows:
        writer.writerow(
            ["" if (v := plain_value(f.kind, row[f.name])) is None else v for f in report.fields]
        )
    return buffer.getvalue()


def to_json(report: Tabular, rows: Sequence[Row]) -> str:
    """A JSON array of objects keyed by column name, one object per line."""
    if not rows:
        return "[]\n"
    lines = (
        json.dumps(
            {f.name: plain_value(f.kind, row[f.name]) for f in report.fields}, ensure_ascii=False
        )
        for row in rows
    )
    return "[\n" + ",\n".join(lines) + "\n]\n"


def to_table(report: Tabular, rows: Sequence[Row], width: int | None = None) -> Table:
    """The rows as a table at most ``width`` cells wide (a terminal's width; None: as wide as
    the values). Ids, numbers and times are never cut; the long texts marked ``shortened``
    share what room is left and are cut with … beyond it. When even that does not fit, the
    last columns are left out and the caption names them. CSV and JSON have every value."""
    fields = list(report.table_fields)
    cells = [[cell_text(f.kind, row[f.name]) for f in fields] for row in rows]
    whole = [
        max([_longest_word(f.title), *(cell_len(line[i]) for line in cells)])
        for i, f in enumerate(fields)
    ]
    hidden: list[str] = []
    while (
        width is not None and len(fields) > _FEWEST_COLUMNS and _least_width(fields, whole) > width
    ):
        hidden.insert(0, fields.pop().title)
        whole.pop()
    shortened = sum(f.shortened for f in fields)
    share: int | None = None
    if width is not None and shortened:
        fixed = _least_width(fields, whole) - _SHORTEST_TEXT * shortened
        share = max(_SHORTEST_TEXT, (width - fixed) // shortened)
    caption = f"left out to fit the terminal: {', '.join(hidden)}" if hidden else None
    table = Table(title=report.title, caption=caption)
    for f in fields:
        if f.shortened:
            table.add_column(f.title, overflow="ellipsis", no_wrap=True, max_width=share)
        else:
            # Fold rather than cut if the terminal is too narrow even for these.
            table.add_column(
                f.title, justify="right" if f.kind in _NUMERIC else "left", overflow="fold"
            )
    for line in cells:
        table.add_row(*line[: len(fields)])
    return table


def _least_width(fields: Sequence[ReportColumn], whole: Sequence[int]) -> int:
    """The narrowest a table of these columns can be without cutting what must stay whole:
    each column costs its padding (one cell either side) and a border, plus the edge."""
    texts = sum(_SHORTEST_TEXT if f.shortened else w for f, w in zip(fields, whole, strict=True))
    return texts + 3 * len(fields) + 1


_FEWEST_COLUMNS = 2
_SHORTEST_TEXT = 8


def _longest_word(title: str) -> int:
    """A heading wraps at spaces, so its longest word is the least room it needs."""
    return max(cell_len(word) for word in title.split())
