"""`tanma-sync report` as a user runs it: a subprocess over a synced mirror and the demo's."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from sync.mirror import database as db
from sync.mirror import reports
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.acceptance.conftest import Cli, clean_env
from tests.helpers import APP_KEY


def no_trace(text: str) -> None:
    assert "Traceback" not in text, text
    assert APP_KEY not in text, "the app key leaked"


def read_report(database_url: str, name: str, since: date | None = None) -> list[dict[str, Any]]:
    """The report's rows read in-process, for comparing with what the CLI printed."""

    async def read() -> list[dict[str, Any]]:
        engine = db.create_engine(database_url)
        try:
            report = reports.find_report(name)
            rows = await MirrorStore(engine).reads.report_rows(reports.report_query(report, since))
            return [dict(r) for r in reports.ordered(report, rows)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def as_printed(report: reports.Report, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as CSV and JSON carry them, minus durations (they tick between two reads)."""
    return [
        {
            f.name: reports.plain_value(f.kind, row[f.name])
            for f in report.fields
            if f.kind is not reports.Kind.SECONDS
        }
        for row in rows
    ]


def parse_csv(report: reports.Report, text: str) -> list[dict[str, Any]]:
    """CSV text back into values: numbers for numeric columns, None for empty fields."""
    lines = list(csv.DictReader(io.StringIO(text)))
    numeric = {
        f.name
        for f in report.fields
        if f.kind in (reports.Kind.ID, reports.Kind.COUNT, reports.Kind.BYTES)
    }
    return [
        {
            f.name: None
            if line[f.name] == ""
            else int(line[f.name])
            if f.name in numeric
            else line[f.name]
            for f in report.fields
            if f.kind is not reports.Kind.SECONDS
        }
        for line in lines
    ]


@pytest.fixture
def synced(cli: Cli, sim_factory, tmp_path: Path) -> Cli:
    """A CLI whose mirror holds a small simulated data set, one customer never synced."""
    dataset = SimDataset(seed=31, customers=24, mean_files=12)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    path = tmp_path / "customers.csv"
    path.write_text(dataset.customers_csv(), encoding="utf-8")
    assert cli("customers", "import", str(path)).code == 0
    backfill = cli("backfill")
    assert backfill.code == 0, backfill.both
    assert cli("customers", "add", "--external-user-id", "wm-not-yet").code == 0
    return cli


def test_every_report_through_the_cli(synced: Cli, database_url: str) -> None:
    for report in reports.REPORTS:
        # No name prints files_per_customer.
        named = () if report is reports.DEFAULT_REPORT else (report.name,)
        result = synced("report", *named)
        assert result.code == 0, result.both
        assert result.err == ""
        assert result.out.splitlines()[0] == ",".join(f.name for f in report.fields)
        expected = as_printed(report, read_report(database_url, report.name))
        assert parse_csv(report, result.out) == expected, report.name
        assert expected, f"{report.name} printed no rows"

    # JSON, an explicit table into a pipe, and --since.
    health = reports.find_report("sync_health")
    printed = synced("report", "sync_health", "--format", "json")
    assert printed.code == 0, printed.both
    rows = json.loads(printed.out)
    assert all(isinstance(r.pop("staleness_seconds"), int | None) for r in rows)
    assert rows == as_printed(health, read_report(database_url, "sync_health"))
    assert {r["state"] for r in rows} == {"ok", "never_synced"}

    table = synced("report", "files_per_type", "--format", "table")
    assert table.code == 0, table.both
    types = read_report(database_url, "files_per_type")
    assert "report_files_per_type" in table.out and "first_file_at (UTC+8)" in table.out
    assert f"{len(types)} rows" in table.out
    assert f"{types[0]['files']:,}" in table.out

    days = [r["china_date"] for r in read_report(database_url, "files_per_day")]
    since = days[len(days) // 2]
    recent = synced("report", "files_per_day", "--since", since.isoformat(), "--format", "json")
    assert recent.code == 0, recent.both
    assert [r["china_date"] for r in json.loads(recent.out)] == [
        d.isoformat() for d in days if d >= since
    ]
    per_customer = synced("report", "files_per_customer", "--since", since.isoformat())
    files = read_report(database_url, "files", since)
    counted = parse_csv(reports.find_report("files_per_customer"), per_customer.out)
    assert sum(r["files"] for r in counted) == len(files)
    for result in (printed, table, recent, per_customer):
        no_trace(result.both)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("files_per_week",),
            "no report named 'files_per_week'; choose one of: files_per_customer",
        ),
        (("files_per_day", "--since", "2024-02-30"), "--since '2024-02-30' is not a date"),
        (("sync_health", "--since", "2024-03-01"), "report sync_health does not take --since"),
        (
            ("files_per_day", "--format", "xlsx"),
            "--format 'xlsx': choose one of table, csv, excel, json",
        ),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(
    cli: Cli, args: tuple[str, ...], expected: str
) -> None:
    result = cli("report", *args)
    assert result.code == 2, result.both
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.err


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_terminal_gets_a_table_by_default(cli: Cli) -> None:
    assert cli("db", "upgrade").code == 0
    shown = cli.in_terminal("report", "files_per_type", columns=160)
    assert shown.code == 0, shown.err
    assert "report_files_per_type" in shown.out and "0 rows" in shown.out
    assert "file_type,files" not in shown.out


def test_report_works_on_the_demo_mirror(tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path, env=clean_env())
    demo = cli("demo", "--customers", "40", timeout=300)
    assert demo.code == 0, demo.both
    env = {"SYNC_DATABASE_URL": "sqlite:///tanma_demo.db"}
    counts = {}
    for report in reports.REPORTS:
        as_json = cli("report", report.name, "--format", "json", **env)
        assert as_json.code == 0 and as_json.err == "", as_json.both
        rows = json.loads(as_json.out)
        assert all(list(r) == [f.name for f in report.fields] for r in rows)
        counts[report.name] = len(rows)
        if report.name != "customers_without_files":
            assert rows, f"the demo's mirror gives {report.name} no rows"
    assert counts["sync_health"] == 40
    assert counts["files_per_customer"] + counts["customers_without_files"] == 40
    table = cli("report", "sync_health", "--format", "table", **env)
    assert table.code == 0 and table.err == "", table.both
    assert "report_sync_health" in table.out and "40 rows" in table.out
    # A reader that stops early (| head) is not an error.
    process = cli.start("report", "files", **env)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith("id,customer_ref,customer_id")
    process.stdout.close()
    assert process.wait(timeout=60) == 0
    assert process.stderr.read() == ""
