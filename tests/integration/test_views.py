"""The reporting views (migration 0002) on real SQLite and PostgreSQL databases.

The same simulated data set is synced into one database of each kind; every view must then
return the same rows on both, and the rows must say what the simulator serves. The day
boundary (16:00 UTC is midnight in China) and the docs' example queries are checked too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.client import TanmaClient
from sync.cli.passes import sync_pass
from sync.domain.chinatime import CHINA_TZ
from sync.domain.customers import CustomerKey
from sync.domain.customers_file import CustomerRow, parse_customers
from sync.domain.pager import CustomerCursor, PassMode, begin_pass
from sync.domain.records import FileRecord, parse_record
from sync.engine.discovery import DiscoveryEngine
from sync.mirror import database as db
from sync.mirror import reports
from sync.mirror.models import CustomerSyncState
from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from sync.sim.dataset import is_usable_id
from tests.conftest import BACKENDS, drop_database_url, new_database_url, require_backend
from tests.helpers import APP_ID, APP_KEY, make_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
VIEWS = tuple(r.view for r in reports.REPORTS)
NEVER_SYNCED = "wm-never-synced-0001"
FAILURE = "HTTP 502 from the gateway after 5 attempts"
# A SQLite instant as SQLAlchemy stores it; PostgreSQL's are turned into the same text.
_SQLITE_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")
_SQL_BLOCK = re.compile(r"^```sql([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


# -- two mirrors of one data set -----------------------------------------------------------


@dataclass
class Twins:
    urls: dict[str, str]
    dataset: SimDataset
    synced_from: datetime  # instants from here on are the sync's own clock readings
    emptied_customer_id: int  # every file of this customer was deleted upstream
    failing_ref: int
    incomplete_ref: int


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twins]:
    for backend in BACKENDS:
        require_backend(backend)
    folder = tmp_path_factory.mktemp("twins")
    urls = {backend: new_database_url(backend, folder) for backend in BACKENDS}
    try:
        yield asyncio.run(_sync_twins(urls))
    finally:
        for url in urls.values():
            drop_database_url(url)


async def _sync_twins(urls: dict[str, str]) -> Twins:
    synced_from = datetime.now(UTC) - timedelta(seconds=1)
    dataset = SimDataset(seed=11, customers=40, mean_files=40, poison_rate=0.03)
    simulator = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY))
    base_url = await simulator.start("127.0.0.1", 0)
    engines = {backend: db.create_engine(url) for backend, url in urls.items()}
    try:
        stores = {}
        for backend, engine in engines.items():
            await db.upgrade(engine)
            stores[backend] = MirrorStore(engine)
        rows, problems = parse_customers(dataset.customers_csv().encode(), "customers.csv")
        assert not problems

        async def each(mode: PassMode) -> None:
            for backend, store in stores.items():
                # One customer is emptied upstream on purpose: the mass-delete guard (tested in
                # test_customer_controls.py) is opened wide so the views see those deletions.
                settings = make_settings(
                    base_url, urls[backend], sync_page_size=25, sync_max_delete_share=1.0
                )
                await sync_pass(settings, store, mode)

        for store in stores.values():
            await store.customers.import_rows(rows)
        await each(PassMode.BACKFILL)
        everyone = range(dataset.customer_count)
        emptied = next(i for i in everyone if 0 < len(dataset.visible_records(i)) <= 5)
        for record in dataset.visible_records(emptied):
            if is_usable_id(record.get("id")):
                dataset.delete_record(record["id"])
        dataset.advance(
            new_rate=0.3,
            late_rate=0.1,
            delete_rate=0.1,
            update_rate=0.1,
            customers=[i for i in everyone if i != emptied],
        )
        await each(PassMode.FULL)
        # Discovery fills in names; one customer leaves the search, so a full discovery marks
        # it gone (its files stay).
        for gone in (None, dataset.customer(3).customer_id):
            if gone is not None:
                simulator.directory.remove(gone)
            for backend, store in stores.items():
                settings = make_settings(base_url, urls[backend])
                async with TanmaClient(settings) as client:
                    await DiscoveryEngine(settings, store, client).discover(full=True)

        def index(customer: CustomerKey) -> int:
            found = dataset.customer_by_id(customer.customer_id)
            assert found is not None
            return found.index

        customers = await stores["sqlite"].customers.keys()
        busy = [c for c in customers if dataset.visible_records(index(c))]
        failing, incomplete = busy[1], busy[2]
        for store in stores.values():
            await store.customers.import_rows([CustomerRow(None, None, NEVER_SYNCED, None)])
            await store.pages.record_failure(failing.ref, FAILURE)
            # An interrupted pass: begun, one page written, never finished.
            cursor = begin_pass(
                await store.pages.load_cursor(incomplete.ref),
                PassMode.BACKFILL,
                0,
                datetime.now(UTC),
            )
            top = dataset.visible_records(index(incomplete))[0]["id"]
            cursor = dataclasses.replace(cursor, pass_cursor_id=top, pass_top_id=top)
            await store.pages.save(incomplete, [], [], cursor, run_id=None, completed=False)
        return Twins(
            urls=urls,
            dataset=dataset,
            synced_from=synced_from,
            emptied_customer_id=dataset.customer(emptied).customer_id,
            failing_ref=failing.ref,
            incomplete_ref=incomplete.ref,
        )
    finally:
        for engine in engines.values():
            await engine.dispose()
        await simulator.stop()


@pytest.fixture
async def engines(twins: Twins) -> AsyncIterator[dict[str, AsyncEngine]]:
    made = {backend: db.create_engine(url) for backend, url in twins.urls.items()}
    yield made
    for engine in made.values():
        await engine.dispose()


async def raw_rows(engine: AsyncEngine, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The statement run as written, as an analyst's client would send it."""
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(sql)
        return list(result.keys()), [tuple(row) for row in result]


def normal(value: Any, synced_from: datetime, *, views: bool = True) -> Any:
    """One value in a form both databases must agree on: instants as SQLite's UTC text (so a
    PostgreSQL instant must equal SQLite's text exactly), dates as YYYY-MM-DD, and instants the
    sync took from its own clock as a placeholder (the two mirrors were synced moments apart).
    The views must give integers; an ad-hoc SUM on PostgreSQL gives a whole numeric."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    elif isinstance(value, date):
        value = value.isoformat()
    elif isinstance(value, Decimal) and not views and value == value.to_integral_value():
        value = int(value)
    elif isinstance(value, Decimal | float):
        raise AssertionError(f"{value!r}: expected an integer, not {type(value).__name__}")
    is_instant = isinstance(value, str) and _SQLITE_INSTANT.fullmatch(value)
    if is_instant and datetime.fromisoformat(value).replace(tzinfo=UTC) >= synced_from:
        return "<sync clock>"
    return value


def normal_rows(
    rows: list[tuple[Any, ...]], synced_from: datetime, *, views: bool = True
) -> list[tuple[Any, ...]]:
    return [tuple(normal(v, synced_from, views=views) for v in row) for row in rows]


def pick(rows: list[tuple[Any, ...]], kept: list[int]) -> list[tuple[Any, ...]]:
    return [tuple(row[i] for i in kept) for row in rows]


# -- the same answers on both --------------------------------------------------------------


@pytest.mark.parametrize("view", VIEWS)
async def test_a_view_gives_the_same_rows_on_sqlite_and_postgresql(
    twins: Twins, engines: dict[str, AsyncEngine], view: str
) -> None:
    read = {b: await raw_rows(e, f"SELECT * FROM {view}") for b, e in engines.items()}
    (lite_columns, lite), (pg_columns, pg) = read["sqlite"], read["postgresql"]
    assert lite_columns == pg_columns == [f.name for f in reports.find_report(view).fields]
    assert lite, f"{view} is empty: the data set should exercise it"
    if view in ("report_sync_health", "report_customers"):
        # Seconds since the last success: the two mirrors were synced a few seconds apart.
        at = lite_columns.index("staleness_seconds")
        for a, b in zip(sorted(lite), sorted(pg), strict=True):
            assert (a[at] is None) == (b[at] is None)
            assert a[at] is None or abs(a[at] - b[at]) < 120
        lite = [row[:at] + row[at + 1 :] for row in lite]
        pg = [row[:at] + row[at + 1 :] for row in pg]
    assert sorted(normal_rows(lite, twins.synced_from), key=repr) == sorted(
        normal_rows(pg, twins.synced_from), key=repr
    )


@pytest.mark.parametrize("report", reports.REPORTS, ids=lambda r: r.name)
async def test_the_report_query_reads_the_view_as_python_values(
    twins: Twins, engines: dict[str, AsyncEngine], report: reports.Report
) -> None:
    typed = {
        b: reports.ordered(
            report, await MirrorStore(e).reads.report_rows(reports.report_query(report))
        )
        for b, e in engines.items()
    }
    # Durations tick between two reads; the cross-database test compares them.
    kept = [i for i, f in enumerate(report.fields) if f.kind is not reports.Kind.SECONDS]
    for backend, engine in engines.items():
        _, raw = await raw_rows(engine, f"SELECT * FROM {report.view}")
        as_read = [tuple(row.values()) for row in typed[backend]]
        assert sorted(normal_rows(pick(as_read, kept), twins.synced_from), key=repr) == sorted(
            normal_rows(pick(raw, kept), twins.synced_from), key=repr
        )
        for row in typed[backend]:
            for field in report.fields:
                value = row[field.name]
                if field.kind is reports.Kind.INSTANT and value is not None:
                    assert value.tzinfo is not None
                if field.kind is reports.Kind.DATE and value is not None:
                    assert type(value) is date
    if report.name not in ("sync_health", "customers"):  # sync clock readings differ
        comparable = {
            b: [{k: normal(v, twins.synced_from) for k, v in row.items()} for row in typed[b]]
            for b in typed
        }
        assert comparable["sqlite"] == comparable["postgresql"]  # same order too


# -- what the views mean -------------------------------------------------------------------


def live_files(dataset: SimDataset) -> list[FileRecord]:
    parsed = [parse_record(raw) for raw in dataset.expected_mirror().values()]
    assert all(isinstance(p, FileRecord) for p in parsed)
    return parsed


def china_day(record: FileRecord) -> date | None:
    return record.create_time.astimezone(CHINA_TZ).date() if record.create_time else None


def expected_groups(
    files: list[FileRecord], key: Any, refs: dict[int, int]
) -> dict[Any, tuple[int, int | None, int, datetime | None, datetime | None]]:
    """key -> (files, total_bytes, customers, first create_time, last create_time)."""
    groups: dict[Any, list[FileRecord]] = defaultdict(list)
    for record in files:
        groups[key(record)].append(record)
    out = {}
    for group, members in groups.items():
        sizes = [m.file_size_bytes for m in members if m.file_size_bytes is not None]
        times = [m.create_time for m in members if m.create_time is not None]
        out[group] = (
            len(members),
            sum(sizes) if sizes else None,
            len({refs[m.customer_id] for m in members}),
            min(times) if times else None,
            max(times) if times else None,
        )
    return out


def _measures(row: dict[str, Any], customers: bool = True) -> tuple[Any, ...]:
    return (
        row["files"],
        row["total_bytes"],
        row["customers"] if customers else 1,
        row.get("first_file_at"),
        row.get("last_file_at"),
    )


async def read_report(engine: AsyncEngine, name: str, since: date | None = None) -> list[dict]:
    report = reports.find_report(name)
    rows = await MirrorStore(engine).reads.report_rows(reports.report_query(report, since))
    return reports.ordered(report, rows)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_views_count_what_the_simulator_serves(
    twins: Twins, engines: dict[str, AsyncEngine], backend: str
) -> None:
    engine = engines[backend]
    files = live_files(twins.dataset)
    refs = {c.customer_id: c.ref for c in await MirrorStore(engine).customers.keys()}

    per_customer = {
        r["customer_id"]: _measures(r, customers=False)
        for r in await read_report(engine, "files_per_customer")
    }
    assert per_customer == expected_groups(files, lambda f: f.customer_id, refs)

    per_day = {
        r["china_date"]: (r["files"], r["total_bytes"], r["customers"])
        for r in await read_report(engine, "files_per_day")
    }
    assert per_day == {
        day: group[:3]
        for day, group in expected_groups(files, china_day, refs).items()
        if day is not None
    }

    per_type = {r["file_type"]: _measures(r) for r in await read_report(engine, "files_per_type")}
    assert per_type == expected_groups(files, lambda f: f.file_type, refs)

    per_author = {
        (r["operator_id"], r["author_name"]): _measures(r)
        for r in await read_report(engine, "files_per_author")
    }
    assert per_author == expected_groups(files, lambda f: (f.operator_id, f.author_name), refs)

    listed = await read_report(engine, "files")
    assert {r["id"] for r in listed} == {f.id for f in files}
    raw = twins.dataset.expected_mirror()
    for row in listed:  # the China wall clock is exactly what the API wrote
        assert row["create_time_china"] == raw[row["id"]]["createTime"]
        assert row["china_date"].isoformat() == raw[row["id"]]["createTime"][:10]

    without = {
        r["customer_id"] or r["external_user_id"]: r
        for r in await read_report(engine, "customers_without_files")
    }
    with_files = {f.customer_id for f in files}
    assert set(without) == {
        c.customer_id for c in twins.dataset.iter_customers() if c.customer_id not in with_files
    } | {NEVER_SYNCED}
    assert without[NEVER_SYNCED]["last_success_at"] is None
    assert without[twins.emptied_customer_id]["deleted_files"] > 0
    assert len(without) + len(per_customer) == len(refs)

    health = {r["customer_ref"]: r for r in await read_report(engine, "sync_health")}
    assert Counter(r["state"] for r in health.values()) == {
        "ok": len(refs) - 3,
        "failing": 1,
        "incomplete": 1,
        "never_synced": 1,
    }
    assert health[twins.failing_ref]["state"] == "failing"
    assert health[twins.failing_ref]["last_error"] == FAILURE
    assert health[twins.incomplete_ref]["state"] == "incomplete"
    assert all(0 <= r["staleness_seconds"] < 3600 for r in health.values() if r["state"] == "ok")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_since_recounts_only_files_from_that_china_day(
    twins: Twins, engines: dict[str, AsyncEngine], backend: str
) -> None:
    engine = engines[backend]
    files = live_files(twins.dataset)
    days = sorted(d for d in map(china_day, files) if d is not None)
    since = days[len(days) // 2]
    recent = [f for f in files if (china_day(f) or date.min) >= since]
    refs = {c.customer_id: c.ref for c in await MirrorStore(engine).customers.keys()}

    for name in ("files_per_customer", "files_per_author", "files_per_type", "files_per_day"):
        # From before the first file, --since changes nothing.
        assert await read_report(engine, name, date(2000, 1, 1)) == await read_report(engine, name)
    per_type = {
        r["file_type"]: _measures(r) for r in await read_report(engine, "files_per_type", since)
    }
    assert per_type == expected_groups(recent, lambda f: f.file_type, refs)
    per_customer = {
        r["customer_id"]: _measures(r, customers=False)
        for r in await read_report(engine, "files_per_customer", since)
    }
    assert per_customer == expected_groups(recent, lambda f: f.customer_id, refs)
    per_author = await read_report(engine, "files_per_author", since)
    assert sum(r["files"] for r in per_author) == len(recent)
    per_day = await read_report(engine, "files_per_day", since)
    assert per_day[0]["china_date"] == since
    assert sum(r["files"] for r in per_day) == len(recent)
    listed = await read_report(engine, "files", since)
    assert {r["id"] for r in listed} == {f.id for f in recent}


# -- the day boundary ----------------------------------------------------------------------

# createTime as the API writes it (China time) -> the China day the views must give it.
API_TIMES = {
    1: ("2024-03-01 23:59:59", date(2024, 3, 1)),  # 15:59:59 UTC
    2: ("2024-03-02 00:00:00", date(2024, 3, 2)),  # 16:00:00 UTC, the day before in UTC
    3: ("2024-03-01 07:59:59", date(2024, 3, 1)),  # 23:59:59 UTC on 2024-02-29
    4: ("2024-02-29 00:00:00", date(2024, 2, 29)),  # leap day
    5: ("2024-12-31 23:59:59", date(2024, 12, 31)),
    6: ("2025-01-01 00:00:00", date(2025, 1, 1)),  # new year in China, 2024 in UTC
}
# Instants given directly, with fractions the API never sends: cut, never rounded up.
INSTANTS = {
    7: (datetime(2024, 3, 1, 15, 59, 59, 999_999, tzinfo=UTC), date(2024, 3, 1)),
    8: (datetime(2024, 3, 1, 16, 0, 0, 1, tzinfo=UTC), date(2024, 3, 2)),
}


async def _store_boundary_files(store: MirrorStore) -> None:
    await store.customers.import_rows([CustomerRow(9001, None, None, None)])
    [customer] = await store.customers.keys()
    records = []
    for record_id, (create_time, _) in API_TIMES.items():
        parsed = parse_record(
            {
                "id": record_id,
                "customerId": 9001,
                "createTime": create_time,
                "fileContent": '{"size": "1KB", "type": "pdf"}',
            }
        )
        assert isinstance(parsed, FileRecord)
        records.append(parsed)
    for record_id, (instant, _) in INSTANTS.items():
        records.append(records[0]._replace(id=record_id, create_time=instant))
    # Neither type nor size: a group of its own, NULL in both columns.
    unknown = parse_record({"id": 9, "customerId": 9001, "createTime": "2024-03-05 12:00:00"})
    assert isinstance(unknown, FileRecord) and unknown.file_type is None
    records.append(unknown)
    await store.pages.save(customer, records, [], CustomerCursor(), run_id=None, completed=True)


async def test_the_china_day_turns_at_16_00_utc(store: MirrorStore) -> None:
    await _store_boundary_files(store)
    days = {r["id"]: r for r in await read_report(store.engine, "files")}
    for record_id, (create_time, day) in API_TIMES.items():
        assert days[record_id]["china_date"] == day, create_time
        assert days[record_id]["create_time_china"] == create_time
    for record_id, (instant, day) in INSTANTS.items():
        assert days[record_id]["china_date"] == day, instant
        assert days[record_id]["create_time"] == instant
        china = instant.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
        assert days[record_id]["create_time_china"] == china

    per_day = {
        r["china_date"]: r["files"] for r in await read_report(store.engine, "files_per_day")
    }
    expected = Counter(day for _, day in (*API_TIMES.values(), *INSTANTS.values()))
    assert per_day == dict(expected + Counter([date(2024, 3, 5)]))
    # --since starts at 00:00 China time: 16:00 UTC the day before is in, 15:59:59.999999 not.
    since = {r["id"] for r in await read_report(store.engine, "files", date(2024, 3, 2))}
    assert since == {2, 5, 6, 8, 9}
    per_type = await read_report(store.engine, "files_per_type", date(2024, 3, 2))
    assert [(r["file_type"], r["files"], r["total_bytes"]) for r in per_type] == [
        ("pdf", 4, 4096),
        (None, 1, None),
    ]


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo", "UTC"])
async def test_the_china_day_ignores_the_session_time_zone(store: MirrorStore, zone: str) -> None:
    await _store_boundary_files(store)
    async with store.engine.connect() as conn:
        await conn.exec_driver_sql(f"SET TIME ZONE '{zone}'")
        rows = (
            await conn.exec_driver_sql("SELECT id, china_date, create_time_china FROM report_files")
        ).all()
    found = {row[0]: (row[1], row[2]) for row in rows}
    for record_id, (create_time, day) in API_TIMES.items():
        assert found[record_id] == (day, create_time)


# -- sync health ---------------------------------------------------------------------------


async def test_staleness_counts_seconds_since_the_last_success(store: MirrorStore) -> None:
    await store.customers.import_rows(
        [CustomerRow(1, None, None, None), CustomerRow(2, None, None, None)]
    )
    first, second = await store.customers.keys()
    await store.pages.save(first, [], [], CustomerCursor(), run_id=None, completed=True)
    day_ago = datetime.now(UTC) - timedelta(days=1)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(CustomerSyncState)
            .where(CustomerSyncState.customer_ref == first.ref)
            .values(last_success_at=day_ago)
        )
    health = {r["customer_ref"]: r for r in await read_report(store.engine, "sync_health")}
    assert health[first.ref]["state"] == "ok"
    assert 86_400 <= health[first.ref]["staleness_seconds"] <= 86_400 + 30
    assert health[second.ref]["state"] == "never_synced"
    assert health[second.ref]["staleness_seconds"] is None
    assert health[second.ref]["consecutive_failures"] == 0

    await store.pages.record_failure(first.ref, "timeout")
    await store.pages.record_failure(first.ref, "timeout again")
    health = {r["customer_ref"]: r for r in await read_report(store.engine, "sync_health")}
    assert health[first.ref]["state"] == "failing"
    assert health[first.ref]["consecutive_failures"] == 2
    assert health[first.ref]["last_error"] == "timeout again"
    assert health[first.ref]["last_success_at"] == day_ago


# -- the migration -------------------------------------------------------------------------


async def test_downgrading_past_0002_drops_the_views_and_keeps_the_tables(
    database_url: str,
) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        async with engine.begin() as conn:
            assert set(await conn.run_sync(lambda c: inspect(c).get_view_names())) == set(VIEWS)
            await conn.run_sync(lambda c: command.downgrade(db.alembic_config(c), "0001"))
            assert await conn.run_sync(lambda c: inspect(c).get_view_names()) == []
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"customers", "customer_files", "customer_sync_state"} <= tables
        await db.upgrade(engine)
        async with engine.connect() as conn:
            assert set(await conn.run_sync(lambda c: inspect(c).get_view_names())) == set(VIEWS)
            assert (await conn.execute(text("SELECT COUNT(*) FROM report_files"))).scalar() == 0
    finally:
        await engine.dispose()


# -- docs/schema.md ------------------------------------------------------------------------


def doc_examples() -> list[tuple[str, str]]:
    """(where, sql) for every ```sql block of docs/schema.md; ``where`` is '' for both
    databases, else the database named after ```sql."""
    found = [(m.group(1).strip(), m.group(2)) for m in _SQL_BLOCK.finditer(DOCS.read_text("utf-8"))]
    assert len(found) >= 12, "the docs' example queries were not found"
    return found


async def test_the_docs_example_queries_run_on_both_and_agree(
    twins: Twins, engines: dict[str, AsyncEngine]
) -> None:
    for where, sql in doc_examples():
        statement = sql.strip().rstrip(";")
        if where:
            assert where in BACKENDS, f"unknown database {where!r} on a docs example"
            await raw_rows(engines[where], statement)
            continue
        results = {b: await raw_rows(e, statement) for b, e in engines.items()}
        (lite_columns, lite), (pg_columns, pg) = results["sqlite"], results["postgresql"]
        assert lite_columns == pg_columns, sql
        assert lite, f"the data set gives this example no rows:\n{sql}"
        assert normal_rows(lite, twins.synced_from, views=False) == normal_rows(
            pg, twins.synced_from, views=False
        ), sql
