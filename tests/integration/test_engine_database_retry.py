"""Page writes that lose their database connection are retried in place, on SQLite and
PostgreSQL: a blip costs no customer, a lasting outage still stops the run with one line.

The fault is a statement failing as a dropped connection does (SQLAlchemy's error, marked
``connection_invalidated``) just before a page's cursor is written, after its rows went into
the same transaction, so the retry must also find that transaction rolled back whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.cli.passes import sync_pass
from sync.config.settings import Settings
from sync.domain.errors import FatalError
from sync.domain.pager import PassMode
from sync.engine.db_retry import DB_RETRY_WAITS_S
from sync.mirror.models import CustomerFile, CustomerSyncState
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import assert_mirror_equals, fetch_mirror, make_settings
from tests.reliability.support import import_customers

# What the engine waits between attempts (sync/engine/db_retry.py): 0.25 + 0.5 + 1 + 2 s.
RETRY_WAITS_S = sum(DB_RETRY_WAITS_S)


@contextmanager
def cursor_writes_fail(engine: AsyncEngine, fails: Callable[[int], bool]) -> Iterator[None]:
    """Fail the n-th write of customer_sync_state (counting from 1) whenever ``fails(n)``."""
    writes = 0

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal writes
        if not statement.lstrip().upper().startswith("INSERT INTO CUSTOMER_SYNC_STATE"):
            return
        writes += 1
        if fails(writes):
            raise OperationalError(
                statement,
                None,
                ConnectionResetError(104, "Connection reset by peer"),
                connection_invalidated=True,
            )

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


@contextmanager
def cursor_writes_fail_for_good(
    engine: AsyncEngine, fails: Callable[[int], bool]
) -> Iterator[None]:
    """Refuse the n-th write of customer_sync_state whenever ``fails(n)``, as a constraint
    would: an error no retry cures."""
    writes = 0

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal writes
        if statement.lstrip().upper().startswith("INSERT INTO CUSTOMER_SYNC_STATE"):
            writes += 1
            if fails(writes):
                raise OperationalError(
                    statement, None, RuntimeError("the third cursor write is refused")
                )

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def _eight_customers(
    store: MirrorStore, database_url: str, sim_factory: Any, seed: int, mean_files: int
) -> tuple[SimDataset, Settings]:
    """Eight customers served and imported; settings with five records a page."""
    dataset = SimDataset(seed=seed, customers=8, mean_files=mean_files)
    sim = sim_factory(dataset)
    await import_customers(store, dataset)
    return dataset, make_settings(sim.base_url, database_url, sync_page_size=5)


def _retries(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("event") == "database_retry"]


async def test_a_page_write_that_loses_its_connection_is_retried_in_place(
    store: MirrorStore, database_url: str, sim_factory
) -> None:
    dataset, settings = await _eight_customers(store, database_url, sim_factory, 51, 20)
    # The fifth and sixth cursor writes fail: a batch of pages, then the first of them alone
    # (a failed batch is written again page by page), which then fails to its worker.
    failing = cursor_writes_fail(store.engine, lambda n: n in (5, 6))
    with failing, structlog.testing.capture_logs() as logs:
        report = await sync_pass(settings, store, PassMode.BACKFILL)
    assert report.status == "ok", report.failures
    assert report.totals.customers_ok == 8
    # Counted once each: the failed transactions left nothing behind for the retry to find.
    assert report.totals.records_inserted == len(dataset.expected_mirror())
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())
    retries = _retries(logs)
    assert retries, logs
    for entry in retries:
        assert entry["log_level"] == "warning" and entry["customer"], entry
        assert entry["error"] == "connection lost: [Errno 104] Connection reset by peer", entry
        assert not entry.get("exc_info"), entry
    assert not [e for e in logs if e.get("event") == "customer_failed"], logs


async def test_a_lasting_outage_still_stops_the_run_after_the_retries(
    store: MirrorStore, database_url: str, sim_factory
) -> None:
    _, settings = await _eight_customers(store, database_url, sim_factory, 52, 10)
    started = time.monotonic()
    failing = cursor_writes_fail(store.engine, lambda _n: True)
    with failing, structlog.testing.capture_logs() as logs, pytest.raises(FatalError) as stopped:
        await sync_pass(settings, store, PassMode.BACKFILL)
    waited = time.monotonic() - started
    assert str(stopped.value).startswith("the database keeps failing (database error: connection")
    assert "\n" not in str(stopped.value)
    attempts: dict[str, list[int]] = {}
    for entry in _retries(logs):
        attempts.setdefault(entry["customer"], []).append(entry["attempt"])
    # Three customers in a row failed, each only after its four retries.
    assert sum(seen == [1, 2, 3, 4] for seen in attempts.values()) >= 3, attempts
    # The workers retry side by side, so the run stops one retry budget in, not three.
    assert RETRY_WAITS_S <= waited < RETRY_WAITS_S + 5, waited


async def test_a_failed_page_write_stops_its_customer_before_the_next_page_is_written(
    store: MirrorStore, database_url: str, sim_factory
) -> None:
    # The next page is fetched while a page is written (sync/engine/write_behind.py): a write
    # that fails for good must still leave that customer's stored rows and cursor agreeing,
    # with nothing of the page fetched after it.
    dataset = SimDataset(seed=53, customers=2, mean_files=40)
    sim = sim_factory(dataset)
    await import_customers(store, dataset)
    settings = make_settings(sim.base_url, database_url, sync_page_size=5, sync_concurrency=1)
    first = dataset.customer(0)
    _, served = dataset.page(0, None, 20)
    assert len(served) == 20, "the first customer needs at least four pages"
    failing = cursor_writes_fail_for_good(store.engine, lambda n: n == 3)
    with failing, structlog.testing.capture_logs() as logs:
        report = await sync_pass(settings, store, PassMode.BACKFILL)
    assert report.status == "partial"
    assert report.totals.customers_failed == 1 and report.totals.customers_ok == 1
    assert report.failures == [
        f"customer {first.customer_id}: database error: the third cursor write is refused"
    ]
    assert not _retries(logs)  # not a lost connection: nothing to try again
    async with store.engine.connect() as conn:
        stored = set(
            (
                await conn.execute(
                    select(CustomerFile.id).where(CustomerFile.source_customer_id == 1)
                )
            ).scalars()
        )
        cursor = await conn.scalar(
            select(CustomerSyncState.pass_cursor_id).where(CustomerSyncState.customer_ref == 1)
        )
    # Pages one and two, and the cursor at the end of page two; pages three and four (the one
    # fetched while three was written) are not there.
    assert stored == {record["id"] for record in served[:10]}
    assert cursor == served[9]["id"]
    # The second customer went on as usual.
    second = dataset.page(1, None, 1000)[1]
    async with store.engine.connect() as conn:
        kept = await conn.scalar(select(func.count()).where(CustomerFile.source_customer_id == 2))
    assert kept == len(second)
