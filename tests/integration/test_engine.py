"""Whole passes against the simulator over loopback, into SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from sync.cli.passes import sync_pass
from sync.domain.customers_file import parse_customers
from sync.domain.errors import CredentialsRejected
from sync.domain.pager import PassMode
from sync.mirror.models import CustomerSyncState, RejectedRecordRow, SyncRun
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import (
    StartSim,
    assert_mirror_equals,
    fetch_mirror,
    make_settings,
)


async def import_all(store: MirrorStore, dataset: SimDataset) -> None:
    rows, problems = parse_customers(dataset.customers_csv().encode(), "customers.csv")
    assert not problems
    await store.customers.import_rows(rows)


async def test_backfill_mirrors_everything_then_a_quiet_run_costs_one_request_each(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=3, customers=40, mean_files=30)
    simulator, url = await start_sim(dataset, page_size_cap=100)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=25)

    report = await sync_pass(settings, store, PassMode.BACKFILL)
    assert report.status == "ok"
    assert report.totals.customers_ok == 40
    assert report.totals.records_inserted == len(dataset.expected_mirror())
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())

    simulator.reset_stats()
    quiet = await sync_pass(settings, store, PassMode.INCREMENTAL)
    assert quiet.totals.requests == 40  # the floor: one request per unchanged customer
    assert simulator.stats.as_dict()["requests_total"] == 40
    assert quiet.totals.records_inserted == 0 and quiet.totals.records_updated == 0


async def test_incremental_catches_new_and_out_of_order_records(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=4, customers=20, mean_files=15)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=10, sync_lookback="10m")
    await sync_pass(settings, store, PassMode.BACKFILL)

    busy = next(i for i in range(20) if dataset.visible_records(i))
    late = dataset.add_record(busy, below_max_by_seconds=45)  # arrives after larger ids
    dataset.advance(new_rate=0.5, late_rate=0.3, delete_rate=0, update_rate=0)
    report = await sync_pass(settings, store, PassMode.INCREMENTAL)
    assert report.status == "ok"
    rows = await fetch_mirror(store.engine)
    assert late["id"] in {r.id for r in rows}
    assert_mirror_equals(rows, dataset.expected_mirror())


async def test_a_record_later_than_the_lookback_waits_for_a_backfill(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=5, customers=6, mean_files=60)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=10, sync_lookback="1m")
    await sync_pass(settings, store, PassMode.BACKFILL)
    busy = max(range(6), key=lambda i: len(dataset.visible_records(i)))
    listed = dataset.visible_records(busy)
    assert len(listed) > 40
    # Three pages deep and far more than the lookback below the top: out of a quiet run's reach.
    assert listed[0]["id"] - listed[30]["id"] > settings.lookback_ids
    very_late = dataset.add_record(busy, id=listed[30]["id"] - 1)

    await sync_pass(settings, store, PassMode.INCREMENTAL)
    assert very_late["id"] not in {r.id for r in await fetch_mirror(store.engine)}
    await sync_pass(settings, store, PassMode.BACKFILL)
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


async def test_full_backfill_updates_marks_deleted_and_clears_on_return(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=6, customers=10, mean_files=20)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    # Some customers hold a file or two, so a victim can be most of their list: the mass-delete
    # guard (tested in test_customer_controls.py) is opened wide to test the marking itself.
    settings = make_settings(url, database_url, sync_page_size=7, sync_max_delete_share=1.0)
    await sync_pass(settings, store, PassMode.BACKFILL)

    victims = sorted(dataset.expected_mirror())[::9][:4]
    for record_id in victims:
        dataset.delete_record(record_id)
    dataset.advance(new_rate=0.3, late_rate=0, delete_rate=0, update_rate=0.3)
    report = await sync_pass(settings, store, PassMode.FULL)
    assert report.totals.records_deleted == len(victims)
    assert report.totals.records_updated > 0
    rows = await fetch_mirror(store.engine)
    assert {r.id for r in rows if r.deleted_at is not None} == set(victims)
    assert_mirror_equals(rows, dataset.expected_mirror())

    dataset.restore_record(victims[0])
    again = await sync_pass(settings, store, PassMode.FULL)
    assert again.totals.records_deleted == 0
    rows = await fetch_mirror(store.engine)
    assert {r.id for r in rows if r.deleted_at is not None} == set(victims[1:])


async def test_poison_records_are_set_aside_and_the_rest_is_stored(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=8, customers=15, mean_files=20, poison_rate=0.08)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    report = await sync_pass(
        make_settings(url, database_url, sync_page_size=10), store, PassMode.BACKFILL
    )

    unusable = [p for p in dataset.poison_records() if not p.usable]
    assert unusable, "the data set should hold poison records"
    assert report.status == "partial" and report.totals.records_rejected >= len(unusable)
    rows = await fetch_mirror(store.engine)
    assert_mirror_equals(rows, dataset.expected_mirror())
    async with store.engine.connect() as conn:
        rejected = (await conn.execute(select(RejectedRecordRow))).all()
    assert len(rejected) == len(unusable)
    assert all(r.reason and r.payload for r in rejected)
    not_json = [p for p in dataset.poison_records() if p.kind == "content_not_json"]
    assert not_json, "the data set should hold a record whose fileContent is not JSON"
    for poison in not_json:
        row = next(r for r in rows if r.id == poison.key)
        assert row.file_size_bytes is None and row.raw["fileContent"] == poison.body["fileContent"]


async def test_wrong_credentials_stop_the_run_with_a_clear_error(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=9, customers=5)
    simulator, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, tanma_app_key="not-the-key")
    with pytest.raises(CredentialsRejected, match="TANMA_APP_KEY"):
        await sync_pass(settings, store, PassMode.BACKFILL)
    # No retry loop: a signature error stops at once.
    assert simulator.stats.as_dict()["requests_total"] <= settings.sync_concurrency
    async with store.engine.connect() as conn:
        run = (await conn.execute(select(SyncRun))).one()
    assert run.status == "failed" and "1002" in run.error_summary


async def test_clock_skew_is_corrected_from_the_date_header(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=10, customers=6, mean_files=10)
    _, url = await start_sim(dataset, clock_offset_s=600, timestamp_window_s=60)
    await import_all(store, dataset)
    report = await sync_pass(make_settings(url, database_url), store, PassMode.BACKFILL)
    assert report.status == "ok"
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


async def test_transient_faults_are_retried_and_nothing_is_lost(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=11, customers=12, mean_files=25)
    simulator, url = await start_sim(
        dataset,
        fault_http500=0.08,
        fault_html502=0.08,
        fault_truncated=0.08,
        fault_code1000=0.08,
        fault_burst429=0.04,
        fault_reset=0.05,
        fault_stall=0.03,
        stall_s=3,
        fault_seed=5,
    )
    await import_all(store, dataset)
    settings = make_settings(
        url, database_url, sync_page_size=10, sync_max_attempts=8, tanma_request_timeout=1
    )
    report = await sync_pass(settings, store, PassMode.BACKFILL)
    assert report.status == "ok", report.failures
    assert report.totals.retries > 0
    # Every failed attempt was retried (nothing was given up), so the two counts agree.
    assert report.totals.errors == report.totals.retries
    stats = simulator.stats.as_dict()
    assert stats["requests_total"] == report.totals.requests
    assert stats["outcomes"]["ok"] == report.totals.requests - report.totals.errors
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


async def test_a_customer_that_keeps_failing_is_recorded_and_resumed_next_pass(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=12, customers=8, mean_files=30)
    simulator, url = await start_sim(
        dataset, fault_http500=0.5, fault_seed=2, max_faults_per_customer_page=100
    )
    await import_all(store, dataset)
    flaky = make_settings(url, database_url, sync_page_size=5, sync_max_attempts=2)
    first = await sync_pass(flaky, store, PassMode.BACKFILL)
    assert first.status == "partial" and first.totals.customers_failed > 0
    async with store.engine.connect() as conn:
        errors = (
            (
                await conn.execute(
                    select(CustomerSyncState.last_error).where(
                        CustomerSyncState.last_error.is_not(None)
                    )
                )
            )
            .scalars()
            .all()
        )
    assert errors and all("HTTP 500" in e for e in errors)

    simulator.configure(fault_http500=0.0)
    second = await sync_pass(flaky, store, PassMode.BACKFILL)
    assert second.status == "ok"
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())
    async with store.engine.connect() as conn:
        assert (
            await conn.scalar(select(func.count()).where(CustomerSyncState.last_error.is_not(None)))
            == 0
        )


async def test_a_server_page_cap_below_the_page_size_is_not_mistaken_for_the_end(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=13, customers=6, mean_files=60)
    _, url = await start_sim(dataset, page_size_cap=20)
    await import_all(store, dataset)
    await sync_pass(make_settings(url, database_url, sync_page_size=100), store, PassMode.BACKFILL)
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


async def test_oversized_bodies_are_refused_not_loaded(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=14, customers=4, mean_files=40)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=100, sync_max_response_bytes=4096)
    report = await sync_pass(settings, store, PassMode.BACKFILL)
    big = [f for f in report.failures if "SYNC_MAX_RESPONSE_BYTES" in f]
    assert big, report.failures


async def test_the_rate_limit_holds_across_concurrent_customers(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=15, customers=30, mean_files=8)
    simulator, url = await start_sim(dataset, rate_limit=60)
    await import_all(store, dataset)
    settings = make_settings(
        url, database_url, sync_rate_limit=50, sync_concurrency=8, sync_page_size=5
    )
    report = await sync_pass(settings, store, PassMode.BACKFILL)
    stats = simulator.stats.as_dict()
    assert report.status == "ok"
    assert stats["over_limit"] == 0
    assert report.totals.requests / report.seconds <= 50 * 1.05


async def test_a_resumed_pass_also_catches_what_arrived_above_it(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    """Finishing an interrupted walk also picks up what arrived above its cursor meanwhile (new
    records, and late ones below its stale top), instead of leaving them for the pass after."""
    from datetime import UTC, datetime

    from sync.domain.pager import CustomerCursor

    dataset = SimDataset(seed=17, customers=4, mean_files=60)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=10)
    await sync_pass(settings, store, PassMode.BACKFILL)

    busy = max(range(4), key=lambda i: len(dataset.visible_records(i)))
    listed = dataset.visible_records(busy)
    assert len(listed) > 40
    customer = next(
        c
        for c in await store.customers.keys()
        if c.customer_id == dataset.customer(busy).customer_id
    )
    # As if a walk from the current top had been killed three pages down.
    interrupted = CustomerCursor(
        high_water_id=None,
        pass_cursor_id=listed[29]["id"],
        pass_top_id=listed[0]["id"],
        pass_started_at=datetime.now(UTC),
    )
    await store.pages.save(customer, [], [], interrupted, run_id=None, completed=False)
    late = dataset.add_record(busy, id=listed[5]["id"] - 1)
    new = dataset.add_record(busy)

    await sync_pass(settings, store, PassMode.INCREMENTAL)
    mirrored = {r.id for r in await fetch_mirror(store.engine)}
    assert {late["id"], new["id"]} <= mirrored
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())
