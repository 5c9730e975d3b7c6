"""Acting on one customer against real databases and the simulator over loopback: the
mass-delete guard on full reconciles, pausing, and resetting a cursor."""

from __future__ import annotations

from sqlalchemy import select

from sync.cli.passes import sync_pass
from sync.domain.customer_state import read_state_document, reset_cursor
from sync.domain.customers_file import CustomerRow, parse_customers
from sync.domain.pager import CustomerCursor, PassMode
from sync.mirror.fleet import FleetStore
from sync.mirror.models import Customer, CustomerFile, utc_now
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import StartSim, make_settings


async def import_all(store: MirrorStore, dataset: SimDataset) -> None:
    rows, problems = parse_customers(dataset.customers_csv().encode(), "customers.csv")
    assert not problems
    await store.customers.import_rows(rows)


def busiest(dataset: SimDataset, customers: int) -> int:
    return max(range(customers), key=lambda i: len(dataset.visible_records(i)))


async def deleted_ids(store: MirrorStore) -> set[int]:
    async with store.engine.connect() as conn:
        query = select(CustomerFile.id).where(CustomerFile.deleted_at.is_not(None))
        return set((await conn.execute(query)).scalars())


async def hold_of(store: MirrorStore, customer_id: int) -> tuple[object, str | None]:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(Customer.held_at, Customer.held_reason).where(
                    Customer.customer_id == customer_id
                )
            )
        ).one()
    return row.held_at, row.held_reason


async def test_a_reconcile_that_would_delete_most_files_holds_them_until_allowed(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=31, customers=4, mean_files=30)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=10)
    await sync_pass(settings, store, PassMode.BACKFILL)
    index = busiest(dataset, 4)
    records = dataset.visible_records(index)
    victims = [r["id"] for r in records[: int(len(records) * 0.8)]]
    for record_id in victims:
        dataset.delete_record(record_id)
    customer_id = dataset.customer(index).customer_id

    held = await sync_pass(settings, store, PassMode.FULL)
    assert held.status == "ok"
    assert held.totals.records_deleted == 0
    assert await deleted_ids(store) == set()
    held_at, reason = await hold_of(store, customer_id)
    assert held_at is not None and reason is not None
    assert f"{len(victims)} of {len(records)} files" in reason
    assert "SYNC_MAX_DELETE_SHARE" in reason
    status = await store.reads.customer_status(3600, None)
    controls = {row["customer_id"]: row["control"] for row in status}
    assert controls[customer_id] == "held"
    assert sum(1 for word in controls.values() if word) == 1

    allowed = await sync_pass(
        settings, store, PassMode.FULL, [str(customer_id)], allow_mass_delete=True
    )
    assert allowed.totals.records_deleted == len(victims)
    assert await deleted_ids(store) == set(victims)
    assert (await hold_of(store, customer_id)) == (None, None)


async def test_a_reconcile_within_the_share_marks_and_clears_an_earlier_hold(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=32, customers=3, mean_files=30)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(
        url, database_url, sync_max_delete_share=0.05, sync_max_delete_min_files=1
    )
    await sync_pass(settings, store, PassMode.BACKFILL)
    index = busiest(dataset, 3)
    records = dataset.visible_records(index)
    victims = [r["id"] for r in records[:3]]
    for record_id in victims:
        dataset.delete_record(record_id)
    customer_id = dataset.customer(index).customer_id
    await sync_pass(settings, store, PassMode.FULL)
    assert (await hold_of(store, customer_id))[0] is not None

    wider = make_settings(url, database_url)  # the default share, 0.5
    report = await sync_pass(wider, store, PassMode.FULL)
    assert report.totals.records_deleted == len(victims)
    assert await deleted_ids(store) == set(victims)
    assert (await hold_of(store, customer_id)) == (None, None)


async def test_a_walk_the_server_cut_short_deletes_nothing(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=33, customers=3, mean_files=40)
    simulator, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=20)
    await sync_pass(settings, store, PassMode.BACKFILL)
    # A cap the server does not announce: every walk ends after its first, short page, which
    # would leave all but the newest files unseen.
    simulator.config = simulator.config.with_changes({"silent_page_size_cap": 5})
    report = await sync_pass(
        make_settings(url, database_url, sync_page_size=20, sync_max_delete_share=1.0),
        store,
        PassMode.FULL,
    )
    assert report.totals.records_deleted == 0
    assert await deleted_ids(store) == set()
    index = busiest(dataset, 3)
    _, reason = await hold_of(store, dataset.customer(index).customer_id)
    assert reason is not None and "walk ended early" in reason
    assert f"the server counted {len(dataset.visible_records(index))} files" in reason


async def test_a_paused_customer_is_skipped_and_listed_as_paused(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=34, customers=5, mean_files=5)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    [key] = await store.customers.keys([str(dataset.customer(0).customer_id)])
    assert await store.controls.set_paused(key.ref, True, "alice")
    assert not await store.controls.set_paused(key.ref, True, "alice")  # already paused
    report = await sync_pass(make_settings(url, database_url), store, PassMode.BACKFILL)
    assert report.customers == 4
    document = await store.controls.document(key.ref)
    assert document["control"]["paused"] and document["control"]["paused_by"] == "alice"
    assert document["sync"]["last_attempt_at"] is None
    rows, _ = await store.reads.customers_page(None)
    assert [row["control"] for row in rows].count("paused") == 1
    status = await store.reads.customer_status(3600, None)
    assert {row["customer_ref"]: row["control"] for row in status}[key.ref] == "paused"

    assert await store.controls.set_paused(key.ref, False, "bob")
    again = await sync_pass(make_settings(url, database_url), store, PassMode.INCREMENTAL)
    assert again.customers == 5
    actions = [(row["action"], row["actor"]) for row in await store.controls.audit_rows(key.ref)]
    assert actions == [("pause", "alice"), ("resume", "bob")]


async def test_reset_round_trips_what_show_prints_and_is_audited(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=35, customers=2, mean_files=30)
    _, url = await start_sim(dataset)
    await import_all(store, dataset)
    settings = make_settings(url, database_url, sync_page_size=10)
    await sync_pass(settings, store, PassMode.BACKFILL)
    [key] = await store.customers.keys([str(dataset.customer(busiest(dataset, 2)).customer_id)])
    snapshot = await store.controls.document(key.ref)
    mark = snapshot["cursor"]["high_water_id"]
    assert snapshot["files"]["live"] == len(dataset.visible_records(busiest(dataset, 2)))

    current = read_state_document(snapshot, key.customer_id, key.external_user_id).cursor
    lowered = reset_cursor(current, mark - 1)
    after = await store.controls.reset(key.ref, lowered, "carol")
    assert after["cursor"]["high_water_id"] == mark - 1
    # The snapshot goes back in whole: what `show --format json` printed, `reset` accepts.
    restored = read_state_document(snapshot, key.customer_id, key.external_user_id)
    back = await store.controls.reset(key.ref, restored.cursor, "carol", paused=restored.paused)
    assert back["cursor"] == snapshot["cursor"]
    assert back["control"]["paused"] == snapshot["control"]["paused"]

    cleared = await store.controls.reset(key.ref, CustomerCursor(), "dave")
    assert cleared["cursor"]["high_water_id"] is None
    rows = await store.controls.audit_rows(key.ref)
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("reset", "carol"),
        ("reset", "carol"),
        ("reset", "dave"),
    ]
    assert f'"high_water_id":{mark}' in rows[0]["before"]
    assert f'"high_water_id":{mark - 1}' in rows[0]["after"]
    # The next pass re-reads the whole list, changing nothing that is already mirrored.
    report = await sync_pass(settings, store, PassMode.INCREMENTAL, [str(key.customer_id)])
    assert report.totals.records_inserted == 0 and report.status == "ok"
    assert (await store.controls.document(key.ref))["cursor"]["high_water_id"] == mark


async def test_a_sweep_never_claims_a_paused_customer_nor_counts_it_stale(
    store: MirrorStore,
) -> None:

    await store.customers.import_rows(
        [CustomerRow(9000 + i, None, None, None, line=i + 2) for i in range(3)]
    )
    fleet = FleetStore(store.engine)
    await fleet.ensure_schedule_rows()
    [first] = await store.customers.keys(["9000"])
    await store.controls.set_paused(first.ref, True, "ops")
    assert (await fleet.outlook(utc_now())).backlog == 2
    claims = await fleet.claim_due("w1", 10, 60, due_by=utc_now())
    assert sorted(c.customer.customer_id for c in claims) == [9001, 9002]
    stalest = await fleet.stalest()
    assert stalest is not None and stalest.label != "9000"
    await fleet.release("w1", [c.customer.ref for c in claims])
    await store.controls.set_paused(first.ref, False, "ops")
    again = await fleet.claim_due("w1", 10, 60, due_by=utc_now())
    assert sorted(c.customer.customer_id for c in again) == [9000, 9001, 9002]
