"""The daemons' shared state on both databases: claims, leases, fences, heartbeats."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from sync.daemon.membership import until_counted
from sync.domain.customers_file import CustomerRow
from sync.domain.errors import LeaseLost
from sync.domain.pager import CustomerCursor
from sync.mirror.dialect import Dialect
from sync.mirror.fleet import FleetStore
from sync.mirror.leases import LeaseFence, check_leases
from sync.mirror.models import CustomerSchedule, SyncWorker, utc_now
from sync.mirror.store import MirrorStore

TTL = 30.0


async def add_customers(store: MirrorStore, count: int) -> FleetStore:
    rows = [CustomerRow(1000 + i, None, None, None, line=i + 2) for i in range(count)]
    await store.customers.import_rows(rows)
    fleet = FleetStore(store.engine)
    assert await fleet.ensure_schedule_rows() == count
    assert await fleet.ensure_schedule_rows() == 0  # idempotent
    return fleet


async def _silence(store: MirrorStore, worker_id: str, seconds: float) -> None:
    """``worker_id``'s last heartbeat was ``seconds`` ago, by the clock the heartbeats are
    stamped with (the database's on PostgreSQL)."""
    async with store.engine.begin() as conn:
        await conn.execute(
            update(SyncWorker)
            .where(SyncWorker.worker_id == worker_id)
            .values(heartbeat_at=Dialect(store.engine).now(-seconds))
        )


async def test_claims_never_hand_one_customer_to_two_workers(store: MirrorStore) -> None:
    fleet = await add_customers(store, 30)
    now = utc_now()
    batches = await asyncio.gather(
        *(fleet.claim_due(f"w{i}", 4, TTL, due_by=now) for i in range(6))
    )
    refs = [claim.customer.ref for batch in batches for claim in batch]
    assert len(refs) == len(set(refs)) == 24
    # Everything else is still free; held customers are not claimed again.
    rest = await fleet.claim_due("late", 100, TTL, due_by=now)
    assert len(rest) == 6 and not {c.customer.ref for c in rest} & set(refs)
    assert await fleet.claim_due("later", 100, TTL, due_by=now) == []


async def test_an_expired_lease_goes_to_the_next_claimer(store: MirrorStore) -> None:
    fleet = await add_customers(store, 3)
    taken = await fleet.claim_due("crashed", 3, TTL, due_by=utc_now())
    assert len(taken) == 3
    async with store.engine.begin() as conn:  # the crashed worker stopped renewing long ago
        await conn.execute(
            update(CustomerSchedule).values(lease_expires_at=utc_now() - timedelta(seconds=1))
        )
    again = await fleet.claim_due("survivor", 10, TTL, due_by=utc_now())
    assert {c.customer.ref for c in again} == {c.customer.ref for c in taken}


async def test_a_lost_lease_fences_off_the_page_transaction(store: MirrorStore) -> None:
    fleet = await add_customers(store, 1)
    (claim,) = await fleet.claim_due("a", 1, TTL, due_by=utc_now())
    customer = claim.customer
    fence = LeaseFence("a", customer.ref, TTL)
    cursor = CustomerCursor(high_water_id=5)
    await store.pages.save(customer, [], [], cursor, run_id=None, completed=True, fence=fence)
    assert (await store.pages.load_cursor(customer.ref)).high_water_id == 5

    async with store.engine.begin() as conn:  # a expired; b took the customer over
        await conn.execute(
            update(CustomerSchedule).values(
                lease_owner="b", lease_expires_at=utc_now() + timedelta(seconds=TTL)
            )
        )
    with pytest.raises(LeaseLost):
        await store.pages.save(
            customer,
            [],
            [],
            CustomerCursor(high_water_id=9),
            run_id=None,
            completed=True,
            fence=fence,
        )
    assert (await store.pages.load_cursor(customer.ref)).high_water_id == 5  # rolled back


async def test_the_leases_of_one_transaction_are_renewed_by_one_statement_per_worker(
    store: MirrorStore,
) -> None:
    fleet = await add_customers(store, 4)
    mine = await fleet.claim_due("a", 3, TTL, due_by=utc_now())
    (theirs,) = await fleet.claim_due("b", 1, TTL, due_by=utc_now())
    renewed: list[tuple[int, float]] = []
    fences = [
        LeaseFence(
            worker,
            claim.customer.ref,
            TTL,
            clock=lambda: 7.0,
            on_renewed=lambda at, ref=claim.customer.ref: renewed.append((ref, at)),
        )
        for worker, claim in [*(("a", c) for c in mine), ("b", theirs)]
    ]
    updates: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE CUSTOMER_SCHEDULE"):
            updates.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with store.engine.begin() as conn:
            await check_leases(conn, store.dialect, fences)
        assert len(updates) == 2  # one for worker a's three customers, one for b's
        assert sorted(renewed) == sorted((f.customer_ref, 7.0) for f in fences)

        async with store.engine.begin() as conn:  # b's lease ran out meanwhile
            await conn.execute(
                update(CustomerSchedule)
                .where(CustomerSchedule.customer_ref == theirs.customer.ref)
                .values(lease_expires_at=utc_now() - timedelta(seconds=1))
            )
        renewed.clear()
        with pytest.raises(LeaseLost, match=f"#{theirs.customer.ref} expired"):
            async with store.engine.begin() as conn:
                await check_leases(conn, store.dialect, fences)
        assert renewed == []  # a failed check renews nothing the caller can count on
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)


async def test_pages_written_together_check_their_leases_in_one_go_and_fail_alone(
    store: MirrorStore,
) -> None:
    # Several workers' pages in one group transaction: their lease fences are one statement.
    # A page whose lease was taken over fails alone; the others land and their leases renew.
    fleet = await add_customers(store, 3)
    claims = await fleet.claim_due("a", 3, TTL, due_by=utc_now())
    lost = claims[1].customer
    async with store.engine.begin() as conn:
        await conn.execute(
            update(CustomerSchedule)
            .where(CustomerSchedule.customer_ref == lost.ref)
            .values(lease_owner="b", lease_expires_at=utc_now() + timedelta(seconds=TTL))
        )
        await conn.execute(
            update(CustomerSchedule)
            .where(CustomerSchedule.lease_owner == "a")
            .values(lease_expires_at=utc_now() + timedelta(seconds=1))
        )
    renewed_at: dict[int, float] = {}

    def save(claim_index: int, clock_time: float) -> asyncio.Future[object]:
        customer = claims[claim_index].customer
        fence = LeaseFence(
            "a",
            customer.ref,
            TTL,
            clock=lambda: clock_time,
            on_renewed=lambda at: renewed_at.__setitem__(customer.ref, at),
        )
        return asyncio.ensure_future(
            store.pages.save(
                customer,
                [],
                [],
                CustomerCursor(high_water_id=7),
                run_id=None,
                completed=True,
                fence=fence,
            )
        )

    results = await asyncio.gather(*(save(i, 10.0 + i) for i in range(3)), return_exceptions=True)
    assert isinstance(results[1], LeaseLost) and f"#{lost.ref}" in str(results[1])
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    kept = [claims[0].customer.ref, claims[2].customer.ref]
    assert renewed_at == {kept[0]: 10.0, kept[1]: 12.0}
    for ref in kept:
        assert (await store.pages.load_cursor(ref)).high_water_id == 7
    assert (await store.pages.load_cursor(lost.ref)).high_water_id is None
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(CustomerSchedule.customer_ref, CustomerSchedule.lease_expires_at)
            )
        ).all()
    # The kept leases run a whole TTL from now again, not the second they were left with.
    floor = utc_now() + timedelta(seconds=TTL / 2)
    assert all(_utc(at) > floor for ref, at in rows if ref in kept)


def _utc(value: object) -> object:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def test_finishing_plans_the_next_check_and_hands_the_lease_back(store: MirrorStore) -> None:
    fleet = await add_customers(store, 1)
    (claim,) = await fleet.claim_due("a", 1, TTL, due_by=utc_now())
    due = utc_now() + timedelta(minutes=30)
    assert await fleet.finish_customer(
        "a",
        claim.customer.ref,
        next_due_at=due,
        poll_interval_s=1800,
        found_new=True,
        full_done=False,
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(CustomerSchedule))).one()
    assert row.lease_owner is None and row.poll_interval_s == 1800
    assert abs((row.next_due_at - due).total_seconds()) < 1e-3
    assert row.last_worker_id == "a" and row.last_new_files_at is not None
    assert await fleet.claim_due("b", 1, TTL, due_by=utc_now()) == []  # not due yet
    # Someone else's lease cannot be finished.
    assert not await fleet.finish_customer(
        "zzz",
        claim.customer.ref,
        next_due_at=due,
        poll_interval_s=1,
        found_new=False,
        full_done=False,
    )


async def test_heartbeats_count_live_workers_and_a_silent_one_drops_out(
    store: MirrorStore,
) -> None:
    fleet = FleetStore(store.engine)
    for name in ("a", "b", "c"):
        await fleet.register_worker(name, "host", 1)
    assert await fleet.heartbeat("a", TTL) == 3
    await _silence(store, "c", 2 * TTL)  # quiet for longer than a lease lifetime
    assert await fleet.heartbeat("a", TTL) == 2
    await fleet.deregister_worker("b")
    assert await fleet.heartbeat("a", TTL) == 1
    assert await fleet.heartbeat("c", TTL) == 2  # its next heartbeat counts it again


async def test_a_newcomer_is_uncounted_until_each_live_worker_has_had_a_heartbeat_since(
    store: MirrorStore,
) -> None:
    fleet = FleetStore(store.engine)
    for name in ("a", "b", "silent"):
        await fleet.register_worker(name, "host", 1)
    await _silence(store, "silent", 2 * TTL)  # not live: it does not hold the newcomer up
    await fleet.register_worker("new", "host", 2)
    assert await fleet.uncounted_by("new", TTL) == 2
    assert await fleet.heartbeat("a", TTL) == 3  # a counts the newcomer, and lowers its share
    assert await fleet.uncounted_by("new", TTL) == 1
    assert await fleet.heartbeat("b", TTL) == 3
    assert await fleet.uncounted_by("new", TTL) == 0
    # The older workers were counted by everyone that registered after them.
    assert await fleet.uncounted_by("a", TTL) == 0


async def test_a_newcomer_waits_for_the_others_heartbeats_and_no_longer(
    store: MirrorStore,
) -> None:
    fleet = FleetStore(store.engine)
    await fleet.register_worker("old", "host", 1)
    await fleet.register_worker("new", "host", 2)
    waiting = asyncio.create_task(until_counted(fleet, "new", TTL))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # old has not counted it yet
    await fleet.heartbeat("old", TTL)
    waited = await asyncio.wait_for(waiting, 5)
    assert 0.3 <= waited < 3


async def test_a_newcomer_waits_at_most_a_lease_lifetime_for_a_worker_that_went_quiet(
    store: MirrorStore,
) -> None:
    fleet = FleetStore(store.engine)
    ttl = 1.0
    await fleet.register_worker("stuck", "host", 1)  # never beats again
    await fleet.register_worker("new", "host", 2)
    waited = await asyncio.wait_for(until_counted(fleet, "new", ttl), 10)
    assert ttl * 0.9 <= waited <= ttl + 1
    # By then the stuck worker dropped out of the count: the newcomer's share is the whole.
    assert await fleet.heartbeat("new", ttl) == 1


async def test_a_full_reconcile_is_requested_once_by_several_daemons(store: MirrorStore) -> None:
    fleet = await add_customers(store, 4)
    assert await fleet.request_full(min_gap_s=3600) == 4
    assert await fleet.request_full(min_gap_s=3600) == 0  # the second daemon's job: no-op
    claims = await fleet.claim_due("a", 10, TTL, due_by=utc_now())
    assert len(claims) == 4 and all(c.full for c in claims)
    for claim in claims:
        await fleet.finish_customer(
            "a",
            claim.customer.ref,
            next_due_at=utc_now(),
            poll_interval_s=None,
            found_new=False,
            full_done=True,
        )
    # Just reconciled: a late duplicate request does not start another.
    assert await fleet.request_full(min_gap_s=3600) == 0
    assert await fleet.request_full(min_gap_s=0) == 4


async def test_the_stalest_customer_is_the_one_checked_longest_ago(store: MirrorStore) -> None:
    fleet = await add_customers(store, 2)
    stalest = await fleet.stalest()
    assert stalest is not None and stalest.label == "1000"
    (first, second) = await fleet.claim_due("a", 2, TTL, due_by=utc_now())
    await store.pages.save(first.customer, [], [], CustomerCursor(), run_id=None, completed=True)
    stalest = await fleet.stalest()
    assert stalest is not None and stalest.label == "1001"
    await fleet.release("a", [first.customer.ref, second.customer.ref])
    assert len(await fleet.claim_due("b", 5, TTL, due_by=utc_now())) == 2
