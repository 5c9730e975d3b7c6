"""Database faults in the middle of a pass: PostgreSQL connections killed by the server, the
database unreachable for a while, and SQLite held by another writer.

Whatever happens to the pass (customers failed, or the run stopped with one clear line), the
mirror and the cursors must stay consistent, and the next pass must leave the mirror exact.
These faults belong to one database each, so each test names the backend it needs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from sync.cli.passes import sync_pass
from sync.domain.errors import FatalError
from sync.domain.pager import PassMode
from sync.engine.db_retry import DB_RETRY_WAITS_S
from sync.mirror import database as db
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.cli_support import cli_for
from tests.conftest import PG_ADMIN_URL, new_database_url
from tests.helpers import make_settings
from tests.reliability.conftest import SEED, Scale
from tests.reliability.figures import Figures
from tests.reliability.mirror_checks import problems, read_snapshot, read_upstream, snapshot_of
from tests.reliability.support import import_customers
from tests.reliability.tcp_proxy import TcpProxy

# What the engine waits between a page write's attempts before it gives up (engine/db_retry.py).
RETRY_WAITS_S = sum(DB_RETRY_WAITS_S)
# A cut this long is an outage the retries cannot outlast.
OUTAGE_LIMIT_S = 15.0


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return new_database_url("sqlite", tmp_path)


async def _migrated(url: str) -> MirrorStore:
    engine = db.create_engine(url)
    await db.upgrade(engine)
    return MirrorStore(engine)


def _consistent(url: str, sim, dataset: SimDataset, lookback_ids: int, *, settled: bool) -> None:
    found = problems(read_snapshot(url), read_upstream(sim, dataset), lookback_ids, settled=settled)
    assert not found, f"seed {SEED}: {found[:5]}"


async def _consistent_async(
    url: str, sim, dataset: SimDataset, lookback_ids: int, *, settled: bool
) -> None:
    snapshot = await snapshot_of(url)
    found = problems(snapshot, read_upstream(sim, dataset), lookback_ids, settled=settled)
    assert not found, f"seed {SEED}: {found[:5]}"


async def _admin_connection() -> asyncpg.Connection:
    return await asyncpg.connect(str(make_url(PG_ADMIN_URL).set(drivername="postgresql")))


async def _terminate_backends(admin: asyncpg.Connection, database: str, wait_ms: int = 0) -> int:
    """pg_terminate_backend on every backend of ``database``; with ``wait_ms``, until each has
    ended. Returns how many were terminated."""
    killed = await admin.fetch(
        "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
        wait_ms,
    )
    return len(killed)


async def test_postgres_connections_killed_mid_pass(
    pg_url: str, sim_factory, scale: Scale, figures: Figures, case_name: str
) -> None:
    dataset = SimDataset(seed=41, customers=30, mean_files=30)
    sim = sim_factory(dataset, latency_ms=3)
    store = await _migrated(pg_url)
    try:
        await import_customers(store, dataset)
        settings = make_settings(sim.base_url, pg_url, sync_page_size=5, sync_rate_limit=300)
        name = make_url(pg_url).database
        terminated = 0

        async def terminate_repeatedly(stop: asyncio.Event) -> None:
            nonlocal terminated
            admin = await _admin_connection()
            try:
                while not stop.is_set():
                    await asyncio.sleep(0.12)
                    terminated += await _terminate_backends(admin, name)
            finally:
                await admin.close()

        stop = asyncio.Event()
        killer = asyncio.create_task(terminate_repeatedly(stop))
        outcome = "completed"
        try:
            report = await sync_pass(settings, store, PassMode.BACKFILL)
            failures = report.failures
        except FatalError as exc:  # several customers in a row failed on the database
            outcome, failures = "stopped", [str(exc)]
        finally:
            stop.set()
            await killer
        assert all("database" in f and "internal error" not in f for f in failures), failures
        await _consistent_async(pg_url, sim, dataset, settings.lookback_ids, settled=False)

        again = await sync_pass(settings, store, PassMode.BACKFILL)
        assert again.status == "ok", again.failures
        await _consistent_async(pg_url, sim, dataset, settings.lookback_ids, settled=True)
        figures.add(case_name, pg_backends_terminated=terminated, db_fault_failures=len(failures))
        figures.note(case_name, first_pass=outcome)
        assert terminated > 0
    finally:
        await store.engine.dispose()


async def test_postgres_connections_killed_once_mid_pass_cost_nothing(
    pg_url: str, sim_factory, figures: Figures, case_name: str
) -> None:
    """Every backend of the database terminated at once, mid-pass (as a server restart or a
    failover does), just as a one-page transaction is about to commit: that write, whose
    connection is gone, is retried in place; the pass ends ok, every customer synced, nothing
    lost. (A batch of several pages would be written again page by page anyway, so the kill
    waits for a batch of one, which only the retry in place can save.)"""
    dataset = SimDataset(seed=46, customers=30, mean_files=30)
    sim = sim_factory(dataset, latency_ms=3)
    store = await _migrated(pg_url)
    name = make_url(pg_url).database
    assert name is not None
    kill = _KillAtCommit(name, after_pages=20)
    try:
        await import_customers(store, dataset)
        settings = make_settings(sim.base_url, pg_url, sync_page_size=5, sync_rate_limit=300)
        kill.listen(store.engine.sync_engine)
        with structlog.testing.capture_logs() as logs:
            report = await sync_pass(settings, store, PassMode.BACKFILL)
        assert kill.terminated > 0 and kill.pages > kill.after_pages
        assert report.status == "ok", report.failures
        assert report.totals.customers_ok == 30
        assert report.totals.records_inserted == len(dataset.expected_mirror())
        await _consistent_async(pg_url, sim, dataset, settings.lookback_ids, settled=True)
        retries = [e for e in logs if e.get("event") == "database_retry"]
        assert retries, "no page write met the terminated connections"
        assert all(e["error"].startswith("connection lost:") for e in retries), retries
        trouble = [e for e in logs if e.get("log_level") in ("warning", "error")]
        assert all(e.get("event") == "database_retry" for e in trouble), trouble
        assert not [e for e in logs if e.get("exc_info")], logs
        figures.add(case_name, pg_backends_terminated=kill.terminated, db_retries=len(retries))
    finally:
        await store.engine.dispose()


class _KillAtCommit:
    """Terminates every backend of ``database`` once, when a transaction that wrote exactly one
    page's cursor commits after ``after_pages`` pages were written."""

    def __init__(self, database: str, after_pages: int) -> None:
        self.database = database
        self.after_pages = after_pages
        self.pages = 0
        self.terminated = 0

    def listen(self, engine: Engine) -> None:
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _begin(self, conn: Connection) -> None:
        conn.info["cursor_rows"] = 0

    def _statement(
        self, conn: Connection, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CUSTOMER_SYNC_STATE"):
            conn.info["cursor_rows"] = conn.info.get("cursor_rows", 0) + (
                len(params) if many else 1
            )

    def _commit(self, conn: Connection) -> None:
        pages = conn.info.pop("cursor_rows", 0)
        self.pages += pages
        if pages == 1 and self.pages > self.after_pages and not self.terminated:
            # From another thread and loop: this one is inside the commit the fault hits.
            with ThreadPoolExecutor(1) as pool:
                self.terminated = pool.submit(
                    asyncio.run, _terminate_all_once(self.database)
                ).result(30)


async def _terminate_all_once(database: str) -> int:
    admin = await _admin_connection()
    try:
        return await _terminate_backends(admin, database, wait_ms=5000)
    finally:
        await admin.close()


def test_database_unreachable_mid_pass_through_the_cli(
    pg_url: str, sim_factory, tmp_path: Path, figures: Figures, case_name: str
) -> None:
    """The CLI's backfill loses its database for good (a proxy in front of PostgreSQL stops
    listening and resets every connection): once the in-place retries of the page writes have
    waited their 3.75 s it stops with one clear line, never a trace, while the database is
    still gone; and the next backfill completes the mirror. (A shorter cut is retried through:
    test_postgres_connections_killed_once_mid_pass_cost_nothing.)"""
    dataset = SimDataset(seed=42, customers=30, mean_files=30)
    sim = sim_factory(dataset, latency_ms=3)
    target = make_url(pg_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = str(target.set(port=proxy.port))
        cli = cli_for(tmp_path, proxied)
        # About 200 pages at 150/s: the pass lasts well over a second, so the cut lands in it.
        cli.env |= {
            "TANMA_BASE_URL": sim.base_url,
            "SYNC_PAGE_SIZE": "5",
            "SYNC_RATE_LIMIT": "150",
            "SYNC_LOG_LEVEL": "info",
        }
        (tmp_path / "customers.csv").write_text(dataset.customers_csv(), "utf-8")
        assert cli("customers", "import", str(tmp_path / "customers.csv")).code == 0

        process = cli.start("backfill")
        assert process.stderr is not None
        first = ""
        while '"pass_started"' not in first:
            line = process.stderr.readline()
            assert line, f"the backfill ended before its pass started: {first}"
            first += line
        time.sleep(0.2)
        proxy.cut()
        cut_at = time.monotonic()
        try:
            out, err = process.communicate(timeout=OUTAGE_LIMIT_S)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        gave_up_after = time.monotonic() - cut_at
        proxy.restore()
        if process.returncode is None:
            more_out, more_err = process.communicate(timeout=120)
            out, err = out + more_out, err + more_err
        err = first + err
        assert gave_up_after < OUTAGE_LIMIT_S, (
            f"still running {gave_up_after:.1f} s into the outage"
        )
        assert process.returncode == 1, (process.returncode, out, err)
        assert gave_up_after >= RETRY_WAITS_S, gave_up_after
        assert "Traceback" not in err and "internal error" not in err, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: the database keeps failing (database error: "), last
        assert '"database_retry"' in err, err
        lookback = make_settings(sim.base_url, proxied).lookback_ids
        _consistent(proxied, sim, dataset, lookback, settled=False)

        again = cli("backfill")
        assert again.code == 0, again.both
        _consistent(proxied, sim, dataset, lookback, settled=True)
        figures.add(case_name, db_outages=proxy.cuts)
        figures.note(
            case_name,
            exit_status_during_outage=process.returncode,
            gave_up_after_s=round(gave_up_after, 2),
        )


async def test_sqlite_held_by_another_writer_waits_then_completes(
    sqlite_url: str, sim_factory, figures: Figures, case_name: str
) -> None:
    """Another process holds BEGIN EXCLUSIVE for two seconds mid-pass: the pass waits for it
    (SQLite's busy timeout) and completes, nothing corrupted."""
    dataset = SimDataset(seed=43, customers=20, mean_files=20)
    sim = sim_factory(dataset, latency_ms=2)
    store = await _migrated(sqlite_url)
    path = make_url(sqlite_url).database
    try:
        await import_customers(store, dataset)
        # About 100 pages at 100/s: the pass is still running when the other writer takes over.
        settings = make_settings(sim.base_url, sqlite_url, sync_page_size=5, sync_rate_limit=100)
        held = threading.Event()
        hold_s = 2.0

        def hold_lock() -> None:
            other = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                while not other.execute("SELECT count(*) FROM customer_files").fetchone()[0]:
                    time.sleep(0.02)  # until the pass has written something
                other.execute("BEGIN EXCLUSIVE")
                held.set()
                time.sleep(hold_s)
                other.execute("COMMIT")
            finally:
                other.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        started = time.monotonic()
        report = await sync_pass(settings, store, PassMode.BACKFILL)
        took = time.monotonic() - started
        holder.join(30)
        assert held.is_set()
        assert report.status == "ok", report.failures
        assert took >= hold_s
        await _consistent_async(sqlite_url, sim, dataset, settings.lookback_ids, settled=True)
        figures.add(case_name, sqlite_lock_waits=1)
        figures.note(case_name, sqlite_lock_held_s=hold_s, pass_s=round(took, 2))
    finally:
        await store.engine.dispose()


def test_sqlite_held_past_the_busy_timeout_is_a_clear_error(
    sqlite_url: str, sim_factory, tmp_path: Path, scale: Scale, figures: Figures, case_name: str
) -> None:
    """A lock held longer than SYNC_SQLITE_BUSY_TIMEOUT: the CLI waits that long, then gives up
    with one line that says the database is locked, and the next run, once the lock is gone,
    completes. CI waits 2 s; a soak waits out the default 30 s."""
    busy_timeout_s = 30.0 if scale.soak else 2.0
    dataset = SimDataset(seed=44, customers=5, mean_files=10)
    sim = sim_factory(dataset)
    cli = cli_for(tmp_path, sqlite_url)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    if not scale.soak:
        cli.env["SYNC_SQLITE_BUSY_TIMEOUT"] = f"{busy_timeout_s:g}s"
    (tmp_path / "customers.csv").write_text(dataset.customers_csv(), "utf-8")
    assert cli("customers", "import", str(tmp_path / "customers.csv")).code == 0
    other = sqlite3.connect(make_url(sqlite_url).database, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        locked = cli("backfill", timeout=300)
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert locked.code == 1, locked.both
    # It waited for the lock as long as the setting says (and gave up well before the default).
    assert waited >= busy_timeout_s, waited
    if not scale.soak:
        assert waited < 25, waited
    assert "Traceback" not in locked.both
    assert "database is locked" in locked.err.strip().splitlines()[-1], locked.err
    again = cli("backfill")
    assert again.code == 0, again.both
    lookback = make_settings(sim.base_url, sqlite_url).lookback_ids
    _consistent(sqlite_url, sim, dataset, lookback, settled=True)
    figures.add(case_name, sqlite_lock_timeouts=1)
    figures.note(case_name, sqlite_busy_timeout_s=busy_timeout_s, waited_s=round(waited, 2))
