"""The report catalogue, queries, order and rendering (sync/mirror/reports.py); no database."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from sqlalchemy.dialects import postgresql, sqlite

from sync.mirror import reports
from sync.mirror.reports import Kind, OutputFormat, ReportUsageError, Since


def by_name(name: str) -> reports.Report:
    return reports.find_report(name)


# -- choosing ------------------------------------------------------------------------------


def test_no_name_means_files_per_customer() -> None:
    assert reports.find_report(None).view == "report_files_per_customer"


@pytest.mark.parametrize(
    "given", ["files_per_day", "report_files_per_day", "files-per-day", " FILES_PER_DAY "]
)
def test_a_report_is_found_by_its_name_or_its_view(given: str) -> None:
    assert reports.find_report(given).view == "report_files_per_day"


def test_an_unknown_name_lists_every_valid_one() -> None:
    with pytest.raises(ReportUsageError) as caught:
        reports.find_report("files_per_week")
    message = str(caught.value)
    assert "'files_per_week'" in message and "\n" not in message
    for name in reports.REPORT_NAMES:
        assert name in message


def test_every_reporting_view_has_a_report() -> None:
    assert {r.view for r in reports.REPORTS} == {
        "report_archive_coverage",
        "report_files",
        "report_files_per_customer",
        "report_files_per_day",
        "report_files_per_author",
        "report_files_per_type",
        "report_customers_without_files",
        "report_sync_health",
        "report_customers",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2024-03-01", date(2024, 3, 1)), (" 2024-02-29 ", date(2024, 2, 29))],
)
def test_since_takes_a_calendar_date(text: str, expected: date) -> None:
    assert reports.parse_since(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2024-3-1", "20240301", "2023-02-29", "2024-13-01", "yesterday", "2024-W09-5"]
)
def test_since_refuses_anything_but_yyyy_mm_dd(text: str) -> None:
    with pytest.raises(ReportUsageError, match=r"--since .* is not a date: write YYYY-MM-DD"):
        reports.parse_since(text)


@pytest.mark.parametrize(
    ("given", "terminal", "expected"),
    [
        (None, True, OutputFormat.TABLE),
        (None, False, OutputFormat.CSV),
        ("json", True, OutputFormat.JSON),
        ("table", False, OutputFormat.TABLE),
        ("CSV", True, OutputFormat.CSV),
        ("excel", False, OutputFormat.EXCEL),
    ],
)
def test_the_format_follows_the_terminal_unless_asked(
    given: str | None, terminal: bool, expected: OutputFormat
) -> None:
    assert reports.parse_format(given, terminal) is expected


def test_an_unknown_format_names_the_choices() -> None:
    choices = "table, csv, excel, json"
    with pytest.raises(ReportUsageError, match=f"--format 'xml': choose one of {choices}"):
        reports.parse_format("xml", True)


# -- queries -------------------------------------------------------------------------------


@pytest.mark.parametrize("report", reports.REPORTS, ids=lambda r: r.name)
def test_a_query_returns_the_report_columns_in_order(report: reports.Report) -> None:
    names = [f.name for f in report.fields]
    assert [c.name for c in reports.report_query(report).selected_columns] == names
    if report.since is not Since.NOT_APPLICABLE:
        since = reports.report_query(report, date(2024, 3, 1))
        assert [c.name for c in since.selected_columns] == names


@pytest.mark.parametrize("report", reports.REPORTS, ids=lambda r: r.name)
@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_every_query_compiles_for_both_databases(report: reports.Report, dialect: object) -> None:
    plain = str(reports.report_query(report).compile(dialect=dialect))
    assert f"FROM {report.view}" in plain
    if report.since is not Since.NOT_APPLICABLE:
        since = str(reports.report_query(report, date(2024, 3, 1)).compile(dialect=dialect))
        assert "china_date >=" in since


def test_since_on_a_file_count_recounts_the_recent_files() -> None:
    sql = str(reports.report_query(by_name("files_per_type"), date(2024, 3, 1)))
    assert "FROM report_files" in sql and "report_files_per_type" not in sql
    assert "GROUP BY recent_files.file_type" in sql


def test_since_on_rows_with_a_day_filters_the_view() -> None:
    sql = str(reports.report_query(by_name("files_per_day"), date(2024, 3, 1)))
    assert "FROM report_files_per_day" in sql and "WHERE report_files_per_day.china_date >=" in sql


@pytest.mark.parametrize("name", ["sync_health", "customers_without_files"])
def test_since_where_it_means_nothing_is_refused_by_name(name: str) -> None:
    with pytest.raises(ReportUsageError) as caught:
        reports.report_query(by_name(name), date(2024, 3, 1))
    message = str(caught.value)
    assert message.startswith(f"report {name} does not take --since")
    assert "files_per_day" in message and "sync_health," not in message


# -- order ---------------------------------------------------------------------------------

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def test_per_author_puts_most_files_first_and_unknown_operators_last() -> None:
    rows = [
        {"operator_id": None, "author_name": None, "files": 5},
        {"operator_id": 9, "author_name": "王芳", "files": 5},
        {"operator_id": 3, "author_name": None, "files": 5},
        {"operator_id": 3, "author_name": "admin", "files": 5},
        {"operator_id": 1, "author_name": "李娜", "files": 7},
    ]
    ordered = reports.ordered(by_name("files_per_author"), rows)
    assert [(r["operator_id"], r["author_name"]) for r in ordered] == [
        (1, "李娜"),
        (3, "admin"),
        (3, None),
        (9, "王芳"),
        (None, None),
    ]


def test_sync_health_puts_trouble_first() -> None:
    states = ["ok", "never_synced", "failing", "incomplete", "ok", "failing"]
    rows = [{"customer_ref": i, "state": s} for i, s in enumerate(states)]
    ordered = reports.ordered(by_name("sync_health"), rows)
    assert [(r["state"], r["customer_ref"]) for r in ordered] == [
        ("failing", 2),
        ("failing", 5),
        ("incomplete", 3),
        ("never_synced", 1),
        ("ok", 0),
        ("ok", 4),
    ]


def test_files_are_newest_first_with_undated_ones_last() -> None:
    rows = [
        {"id": 1, "create_time": T0},
        {"id": 2, "create_time": None},
        {"id": 3, "create_time": T0.replace(hour=9)},
        {"id": 4, "create_time": T0},
    ]
    assert [r["id"] for r in reports.ordered(reports.FILES, rows)] == [3, 4, 1, 2]


# -- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "text"),
    [
        (datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC), "2024-03-01T23:59:59+08:00"),
        (datetime(2024, 3, 1, 16, 0, 0, tzinfo=UTC), "2024-03-02T00:00:00+08:00"),
        (datetime(2024, 12, 31, 16, 0, 0, 123456, tzinfo=UTC), "2025-01-01T00:00:00+08:00"),
    ],
)
def test_instants_leave_in_china_time_with_the_offset(instant: datetime, text: str) -> None:
    assert reports.plain_value(Kind.INSTANT, instant) == text
    assert reports.cell_text(Kind.INSTANT, instant) == text[:19].replace("T", " ")


def test_plain_values_keep_numbers_and_nulls() -> None:
    assert reports.plain_value(Kind.ID, 581632799180834) == 581632799180834
    assert reports.plain_value(Kind.DATE, date(2024, 2, 29)) == "2024-02-29"
    assert reports.plain_value(Kind.BYTES, None) is None
    assert reports.cell_text(Kind.BYTES, 3639482491) == "3,639,482,491"
    assert reports.cell_text(Kind.ID, 581632799180834) == "581632799180834"
    assert reports.cell_text(Kind.TEXT, None) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m 00s"),
        (3599, "59m 59s"),
        (3600, "1h 00m"),
        (86399, "23h 59m"),
        (86400, "1d 00h"),
        (4 * 86400 + 2 * 3600 + 5, "4d 02h"),
        (-90, "-1m 30s"),
    ],
)
def test_durations_read_as_their_two_largest_units(seconds: int, text: str) -> None:
    assert reports.human_seconds(seconds) == text


PER_CUSTOMER_ROWS = [
    {
        "customer_ref": 7,
        "customer_id": 424223356090687,
        "external_user_id": 'wm,"quoted"\nnext',
        "nickname": "🌸王伟",
        "files": 3,
        "total_bytes": None,
        "first_file_at": datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC),
        "last_file_at": datetime(2024, 1, 1, 16, 0, tzinfo=UTC),
    },
    {
        "customer_ref": 8,
        "customer_id": None,
        "external_user_id": "wm客户",
        "nickname": None,
        "files": 1,
        "total_bytes": 30618,
        "first_file_at": None,
        "last_file_at": None,
    },
]


def test_csv_has_a_header_and_round_trips() -> None:
    report = by_name("files_per_customer")
    text = reports.to_csv(report, PER_CUSTOMER_ROWS)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == [f.name for f in report.fields]
    assert parsed[1] == [
        "7",
        "424223356090687",
        'wm,"quoted"\nnext',
        "🌸王伟",
        "3",
        "",
        "2023-01-02T11:04:05+08:00",
        "2024-01-02T00:00:00+08:00",
    ]
    assert parsed[2] == ["8", "", "wm客户", "", "1", "30618", "", ""]
    assert reports.to_csv(report, []) == ",".join(f.name for f in report.fields) + "\n"


def test_csv_for_excel_starts_with_a_bom_and_ends_lines_with_crlf() -> None:
    report = by_name("files_per_customer")
    text = reports.to_csv(report, PER_CUSTOMER_ROWS, for_excel=True)
    assert text.startswith("\ufeff" + ",".join(f.name for f in report.fields) + "\r\n")
    # What Excel (and Python's utf-8-sig) reads back is the same table as plain CSV.
    encoded = text.encode("utf-8")
    assert encoded.startswith(b"\xef\xbb\xbf")
    again = list(csv.reader(io.StringIO(encoded.decode("utf-8-sig"), newline="")))
    assert again == list(csv.reader(io.StringIO(reports.to_csv(report, PER_CUSTOMER_ROWS))))


def test_json_is_an_array_of_objects_with_exact_numbers() -> None:
    report = by_name("files_per_customer")
    text = reports.to_json(report, PER_CUSTOMER_ROWS)
    parsed = json.loads(text)
    assert parsed[0]["customer_id"] == 424223356090687
    assert parsed[0]["total_bytes"] is None
    assert parsed[0]["last_file_at"] == "2024-01-02T00:00:00+08:00"
    assert parsed[1] == {
        "customer_ref": 8,
        "customer_id": None,
        "external_user_id": "wm客户",
        "nickname": None,
        "files": 1,
        "total_bytes": 30618,
        "first_file_at": None,
        "last_file_at": None,
    }
    assert len(text.splitlines()) == 4  # one object per line between the brackets
    assert json.loads(reports.to_json(report, [])) == []


def test_the_table_shows_china_time_and_readable_numbers() -> None:
    report = by_name("sync_health")
    row = {
        "customer_ref": 1,
        "customer_id": 404997901347072,
        "external_user_id": None,
        "state": "failing",
        "last_attempt_at": datetime(2024, 1, 1, 16, 30, tzinfo=UTC),
        "last_success_at": None,
        "staleness_seconds": 11_220,
        "last_error": "HTTP 502",
        "last_error_at": datetime(2024, 1, 1, 16, 30, tzinfo=UTC),
        "consecutive_failures": 1234,
        "nickname": "小李✨",
    }
    console = Console(record=True, width=250, color_system=None)
    console.print(reports.to_table(report, [row]))
    shown = console.export_text()
    assert "report_sync_health" in shown
    assert "last_attempt_at (UTC+8)" in shown and "2024-01-02 00:30:00" in shown
    assert "staleness" in shown and "3h 07m" in shown and "staleness_seconds" not in shown
    assert "1,234" in shown and "404997901347072" in shown and "小李✨" in shown


def test_a_narrow_terminal_folds_values_instead_of_cutting_them() -> None:
    row = dict(PER_CUSTOMER_ROWS[0], external_user_id="wm" + "X" * 40)
    console = Console(record=True, width=70, color_system=None)
    console.print(reports.to_table(by_name("files_per_customer"), [row]))
    shown = console.export_text()
    assert "…" not in shown
    assert sum(line.count("X") for line in shown.splitlines()) == 40


# --- state words and tables that fit ----------------------------------------------------------


def test_the_health_views_state_words_are_health_states() -> None:
    """status and report sync_health speak the same words: the view's CASE yields exactly the
    HealthState values other than stale (which status derives from SYNC_MAX_STALENESS)."""
    migration = next(
        (Path(__file__).resolve().parents[2] / "migrations" / "versions").glob("*_0002_*.py")
    ).read_text("utf-8")
    body = migration[migration.index('"report_sync_health"') :]
    case = body[body.index("CASE") : body.index("END AS state")]
    words = set(re.findall(r"THEN '(\w+)'", case)) | set(re.findall(r"ELSE '(\w+)'", case))
    assert words == {s.value for s in reports.HealthState} - {"stale"}


def test_a_table_fits_its_width_cutting_only_long_texts() -> None:
    rows = [
        {
            "id": 581594857674869 + n,
            "customer_id": 573231464458783,
            "create_time": datetime(2024, 3, 1, 1, 15, tzinfo=UTC),
            "file_name": "合同扫描件_" + "很长的名字" * 10 + ".pdf",
            "file_type": "pdf",
            "file_size_bytes": 2_306_867,
            "author_name": "李洋" * 20,
        }
        for n in range(3)
    ]
    for width in (120, 200):
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(reports.to_table(reports.FILES, rows, width))
        lines = console.export_text().rstrip("\n").splitlines()
        assert all(cell_len(line) <= width for line in lines)
        body = [line for line in lines if line.startswith("│")]
        assert len(body) == 3, "one line per row"
        assert all(str(r["id"]) in line for r, line in zip(rows, body, strict=True))
        assert all("…" in line for line in body)


def test_health_states_are_worst_first() -> None:
    states = reports.HealthState
    assert list(states) == [
        states.FAILING,
        states.STALE,
        states.INCOMPLETE,
        states.NEVER_SYNCED,
        states.OK,
    ]
    assert reports.SEVERITY == {
        "failing": 0,
        "stale": 1,
        "incomplete": 2,
        "never_synced": 3,
        "ok": 4,
    }
