"""Customer discovery against the simulator's search over loopback, into SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sync.api.client import TanmaClient
from sync.cli.passes import sync_pass
from sync.config.settings import Settings
from sync.domain.discovered import DiscoveredCustomer, parse_customer_item
from sync.domain.discovery import DiscoveryWalk, GapReason, Window
from sync.domain.pager import PassMode
from sync.domain.tally import RunStatus
from sync.engine.discovery import DiscoveryBusy, DiscoveryEngine, DiscoveryReport
from sync.mirror.fleet import FleetStore
from sync.mirror.models import (
    Customer,
    CustomerSchedule,
    DiscoveryGap,
    DiscoveryRun,
    RejectedCustomerRow,
    SyncRun,
    utc_now,
)
from sync.mirror.owners import Owner, current_owner
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import (
    StartSim,
    assert_mirror_equals,
    fetch_mirror,
    make_settings,
)


async def discover(
    settings: Settings, store: MirrorStore, *, full: bool = False
) -> DiscoveryReport:
    async with TanmaClient(settings) as client:
        return await DiscoveryEngine(settings, store, client).discover(full=full)


async def customer_rows(store: MirrorStore) -> dict[int, Any]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(Customer.__table__))).all()
    return {row.customer_id: row for row in rows}


def assert_customers_equal(rows: dict[int, Any], expected: dict[int, dict[str, Any]]) -> None:
    """The customers table holds every searchable customer, each field as parsed."""
    missing = sorted(expected.keys() - rows.keys())
    extra = sorted(rows.keys() - expected.keys())
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    for customer_id, item in expected.items():
        parsed = parse_customer_item(item)
        assert isinstance(parsed, DiscoveredCustomer)
        row = rows[customer_id]
        for name in ("external_user_id", "user_id", "sales_id", "nickname", "owner_name"):
            if name == "external_user_id" and parsed.external_user_id is None:
                continue
            assert getattr(row, name) == getattr(parsed, name), f"{name} of {customer_id}"
        assert row.tanma_create_time == parsed.tanma_create_time
        assert row.raw == item
        assert row.gone_at is None


async def test_discovery_finds_every_customer_then_backfill_needs_no_csv(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=5, customers=250, mean_files=6)
    simulator, url = await start_sim(
        dataset, search_null_external_rate=0.1, search_string_id_rate=0.2
    )
    settings = make_settings(url, database_url)

    report = await discover(settings, store)
    assert report.status is RunStatus.OK, report
    expected = simulator.directory.expected_customers()
    assert report.found == report.counts.new == len(expected) == 250
    assert_customers_equal(await customer_rows(store), expected)
    assert simulator.stats.search_past_cap == 0

    backfill = await sync_pass(settings, store, PassMode.BACKFILL)
    assert backfill.status is RunStatus.OK
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())

    async with store.engine.connect() as conn:
        run = (await conn.execute(select(DiscoveryRun.__table__))).one()
        modes = (await conn.execute(select(SyncRun.mode).order_by(SyncRun.id))).scalars().all()
    assert (run.found, run.new, run.gaps) == (250, 250, 0)
    assert modes[0] == "discover"


async def test_nothing_new_costs_at_most_two_requests_and_new_customers_are_found(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=6, customers=400, mean_files=4)
    simulator, url = await start_sim(dataset)
    settings = make_settings(url, database_url)
    assert (await discover(settings, store)).status is RunStatus.OK

    simulator.reset_stats()
    quiet = await discover(settings, store)
    assert quiet.status is RunStatus.OK
    assert quiet.requests <= 2 and simulator.stats.search_requests <= 2
    assert quiet.counts.new == 0

    added = dataset.add_customers(3)
    for customer in added:
        dataset.add_record(customer.index)
    found = await discover(settings, store)
    assert found.counts.new == 3
    assert found.requests <= 2
    rows = await customer_rows(store)
    assert {c.customer_id for c in added} <= rows.keys()

    synced = await sync_pass(settings, store, PassMode.INCREMENTAL)
    assert synced.status is RunStatus.OK
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


async def test_a_cap_of_200_over_1000_customers_finds_all_and_never_asks_past_it(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=7, customers=1000, mean_files=0)
    simulator, url = await start_sim(dataset, search_max_results=200)
    settings = make_settings(
        url, database_url, tanma_search_max_results=200, sync_discovery_page_size=100
    )
    report = await discover(settings, store, full=True)
    assert report.status is RunStatus.OK, report
    assert report.windows_split > 0
    assert simulator.stats.search_past_cap == 0
    assert_customers_equal(await customer_rows(store), simulator.directory.expected_customers())


async def test_customers_deleted_and_created_during_a_walk_every_survivor_is_found(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=8, customers=1000, mean_files=0)
    simulator, url = await start_sim(dataset, search_max_results=300)
    before = set(simulator.directory.expected_customers())
    simulator.configure(search_create_per_request=1, search_delete_per_request=1)
    settings = make_settings(
        url,
        database_url,
        tanma_search_max_results=300,
        sync_discovery_page_size=50,
        sync_discovery_max_rewalks=50,
    )
    report = await discover(settings, store, full=True)
    simulator.configure(search_create_per_request=0, search_delete_per_request=0)
    after = set(simulator.directory.expected_customers())
    survivors = before & after
    rows = await customer_rows(store)
    assert survivors <= rows.keys(), f"{len(survivors - rows.keys())} survivors missed"
    assert report.rewalks > 0
    assert simulator.stats.search_past_cap == 0


async def test_more_customers_in_one_second_than_the_cap_is_a_recorded_gap(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=9, customers=300, mean_files=0)
    simulator, url = await start_sim(dataset, search_max_results=100)
    bulk_at = dataset.now - timedelta(days=3)
    bulk = simulator.directory.add_bulk(150, bulk_at)
    settings = make_settings(
        url, database_url, tanma_search_max_results=100, sync_discovery_page_size=50
    )
    report = await discover(settings, store)
    assert report.status is RunStatus.PARTIAL
    assert [g.reason for g in report.gaps] == [GapReason.CROWDED_SECOND]
    assert report.gaps[0].total_count == 150 and report.gaps[0].fetched == 100
    assert simulator.stats.search_past_cap == 0
    rows = await customer_rows(store)
    others = simulator.directory.expected_customers().keys() - set(bulk)
    assert others <= rows.keys()
    assert len(set(bulk) & rows.keys()) == 100
    async with store.engine.connect() as conn:
        gap = (await conn.execute(select(DiscoveryGap.__table__))).one()
    assert gap.reason == "crowded_second" and gap.total_count == 150
    assert gap.window_start == gap.window_end


async def test_bad_items_are_set_aside_and_the_rest_of_the_page_stored(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=10, customers=60, mean_files=0)
    simulator, url = await start_sim(dataset)
    at = dataset.now - timedelta(days=40)
    bad_items: list[Any] = [
        {"customerId": None, "externalUserId": None, "createTime": "2023-11-01 10:00:00"},
        {"customerId": "12ab", "externalUserId": "", "wechatNickname": "无效"},
        {"customerId": -5},
        {"id": 1.5, "externalUserId": 42},
        {"customerId": 77, "wechatNickname": "bad\u0000nul"},
        ["not", "an", "object"],
    ]
    for item in bad_items:
        simulator.directory.add_raw(item, at)
    good = {"customerId": "880000000001", "externalUserId": None, "wechatNickname": "数字串 id"}
    simulator.directory.add_raw(good, at)
    by_ext = {"externalUserId": "wmOnlyExternal", "wechatNickname": "只有外部 id 😀"}
    simulator.directory.add_raw(by_ext, at)
    settings = make_settings(url, database_url)

    report = await discover(settings, store)
    assert report.status is RunStatus.PARTIAL
    assert report.counts.rejected == len(bad_items)
    rows = await customer_rows(store)
    assert 880000000001 in rows and rows[880000000001].nickname == "数字串 id"
    assert set(simulator.directory.expected_customers()) - {77} <= rows.keys()
    async with store.engine.connect() as conn:
        rejected = (await conn.execute(select(RejectedCustomerRow.__table__))).all()
        ext_only = (
            await conn.execute(
                select(Customer.__table__).where(Customer.external_user_id == "wmOnlyExternal")
            )
        ).one()
    assert len(rejected) == len(bad_items)
    assert all(r.reason and r.payload for r in rejected)
    assert ext_only.customer_id is None and ext_only.nickname == "只有外部 id 😀"

    again = await discover(settings, store, full=True)  # the same bad items: no new rows
    assert again.counts.rejected == len(bad_items)
    async with store.engine.connect() as conn:
        assert len((await conn.execute(select(RejectedCustomerRow))).all()) == len(bad_items)


async def test_items_of_one_transaction_that_claim_one_wecom_id_are_a_conflict_not_a_failure(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    # Pages are written several to a transaction: items that share an externalUserId there
    # must meet as they would on pages of their own, the later one as a conflict.
    dataset = SimDataset(seed=13, customers=40, mean_files=0)
    simulator, url = await start_sim(dataset)
    at = dataset.now - timedelta(days=40)
    first = {"customerId": 990000000001, "externalUserId": "wmShared", "wechatNickname": "一"}
    claimant = {"customerId": 990000000002, "externalUserId": "wmShared", "wechatNickname": "二"}
    spelled = {"externalUserId": "wmShared", "wechatNickname": "同一个"}
    for item in (first, claimant, spelled):
        simulator.directory.add_raw(item, at)
    settings = make_settings(url, database_url, sync_discovery_page_size=10)

    report = await discover(settings, store)
    assert report.status is RunStatus.PARTIAL, report
    assert len(report.conflicts) == 1 and "wmShared" in report.conflicts[0], report.conflicts
    # Whichever of the two the walk read first keeps the WeCom id; the one spelled by it alone
    # is merged into that row.
    rows = await customer_rows(store)
    holders = [r for r in rows.values() if r.external_user_id == "wmShared"]
    assert len(holders) == 1 and holders[0].customer_id in (990000000001, 990000000002)
    assert None not in rows
    loser = ({990000000001, 990000000002} - {holders[0].customer_id}).pop()
    assert loser not in rows
    assert set(simulator.directory.expected_customers()) - {loser} <= rows.keys()


async def test_a_full_walk_marks_gone_customers_and_clears_them_when_they_return(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=11, customers=120, mean_files=0)
    simulator, url = await start_sim(dataset)
    settings = make_settings(url, database_url)
    assert (await discover(settings, store, full=True)).status is RunStatus.OK
    victim = dataset.customer(17).customer_id
    simulator.directory.remove(victim)

    quiet = await discover(settings, store)  # incremental: never marks gone
    assert quiet.counts.gone == 0
    full = await discover(settings, store, full=True)
    assert full.counts.gone == 1
    rows = await customer_rows(store)
    assert rows[victim].gone_at is not None
    assert sum(1 for r in rows.values() if r.gone_at is not None) == 1

    simulator.directory.restore(victim)
    back = await discover(settings, store, full=True)
    assert back.counts.gone == 0 and back.counts.updated == 1
    assert (await customer_rows(store))[victim].gone_at is None


async def test_a_moved_follow_up_makes_the_customer_due(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=12, customers=30, mean_files=2)
    simulator, url = await start_sim(dataset)
    settings = make_settings(url, database_url)
    await discover(settings, store, full=True)
    await sync_pass(settings, store, PassMode.BACKFILL)
    # A pass on PostgreSQL takes part in the leases and has made the rows already.
    await FleetStore(store.engine).ensure_schedule_rows()
    async with store.engine.begin() as conn:
        await conn.execute(
            CustomerSchedule.__table__.update().values(next_due_at=utc_now() + timedelta(days=900))
        )
    followed = dataset.customer(4)
    # Followed up after the file sync (the API's times have whole seconds: a little later).
    simulator.directory.follow_up(followed.customer_id, utc_now() + timedelta(seconds=5))
    report = await discover(settings, store, full=True)
    assert report.counts.hinted == 1
    async with store.engine.connect() as conn:
        due = (
            (
                await conn.execute(
                    select(Customer.customer_id)
                    .join(CustomerSchedule, CustomerSchedule.customer_ref == Customer.id)
                    .where(CustomerSchedule.next_due_at < utc_now() + timedelta(days=800))
                )
            )
            .scalars()
            .all()
        )
    assert due == [followed.customer_id]


async def test_one_discovery_at_a_time_and_a_dead_holder_is_taken_over(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=13, customers=10, mean_files=0)
    _, url = await start_sim(dataset)
    settings = make_settings(url, database_url)
    elsewhere = Owner("another-host", 4242, None)
    assert await store.discovery.claim("another-host:4242", elsewhere, 60) is None
    with pytest.raises(DiscoveryBusy, match="another-host:4242"):
        await discover(settings, store)

    me = current_owner()
    dead_here = Owner(me.hostname, 2**22 + 12345, me.space)
    await store.discovery.release("another-host:4242")
    assert await store.discovery.claim("dead", dead_here, 60, alive=lambda pid: True) is None
    report = await discover(settings, store)  # the holder's pid does not exist here
    assert report.status is RunStatus.OK


def replayed_requests(simulator: Any, settings: Settings, report: DiscoveryReport) -> int:
    """How many requests the pure walk asks of the simulator's search as it is now, planned
    as ``report``'s walk was (same root window, page size and cap)."""
    walk = DiscoveryWalk.plan(
        report_root(report),
        full=report.full,
        page_size=settings.sync_discovery_page_size,
        max_results=settings.tanma_search_max_results,
        max_rewalks=settings.sync_discovery_max_rewalks,
    )
    asked = 0
    while (query := walk.next_query()) is not None:
        window = query.window
        total, items = simulator.directory.query(
            None if window is None else window.start,
            None if window is None else window.end,
            query.page_no,
            query.page_size,
        )
        walk.record(query, total, [f"id:{item['customerId']}" for item in items])
        asked += 1
    return asked


def report_root(report: DiscoveryReport) -> Window:
    assert report.root is not None
    return report.root


async def test_the_request_sent_ahead_is_the_one_the_walk_asks_next(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    # Each answer's next request is sent while its page is written: the simulator must see
    # exactly the walk's requests, none extra, none missing.
    dataset = SimDataset(seed=11, customers=1000, mean_files=0)
    simulator, url = await start_sim(dataset, search_max_results=200)
    settings = make_settings(
        url, database_url, tanma_search_max_results=200, sync_discovery_page_size=50
    )
    report = await discover(settings, store, full=True)
    assert report.status is RunStatus.OK, report
    assert simulator.stats.search_requests == report.requests
    assert report.requests == replayed_requests(simulator, settings, report)
    assert_customers_equal(await customer_rows(store), simulator.directory.expected_customers())


async def test_a_walk_stopped_with_a_request_sent_ahead_resumes_and_finds_everyone(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=12, customers=600, mean_files=0)
    simulator, url = await start_sim(dataset, search_max_results=200)
    settings = make_settings(
        url, database_url, tanma_search_max_results=200, sync_discovery_page_size=50
    )
    asked = 0

    def stop_after_five_checks() -> bool:
        # The walk asks twice per page: before taking an answer, and before sending the next
        # request ahead. Turning on an odd check stops it with a request sent ahead unread.
        nonlocal asked
        asked += 1
        return asked >= 5

    async with TanmaClient(settings) as client:
        engine = DiscoveryEngine(settings, store, client, stopping=stop_after_five_checks)
        stopped = await engine.discover(full=False)
    assert stopped.status is RunStatus.INTERRUPTED, stopped
    assert 0 < stopped.found < 600
    resumed = await discover(settings, store)
    assert resumed.resumed and resumed.status is RunStatus.OK, resumed
    assert_customers_equal(await customer_rows(store), simulator.directory.expected_customers())
