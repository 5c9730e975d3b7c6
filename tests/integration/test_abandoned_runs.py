"""Runs whose owner died while they were `running` are closed as `abandoned` by the next pass,
and only those (regression: a SIGKILLed pass stayed `running` for ever)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select, update

from sync.cli.passes import sync_pass
from sync.domain.customers_file import CustomerRow
from sync.domain.pager import PassMode
from sync.mirror.fleet import FleetStore
from sync.mirror.models import CustomerSchedule, SyncRun, SyncWorker, utc_now
from sync.mirror.owners import ABANDONED_SUMMARY, Owner, current_owner
from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY, make_settings

TTL = 120.0


def reaped_pid() -> int:
    """The pid of a process that has come and gone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def runs_by_id(store: MirrorStore) -> dict[int, SyncRun]:
    async with store.engine.connect() as conn:
        return {r.id: r for r in (await conn.execute(select(SyncRun))).all()}


async def test_only_runs_whose_owner_is_provably_gone_are_closed(store: MirrorStore) -> None:
    me = current_owner()
    fleet = FleetStore(store.engine)
    here_dead = await store.runs.start(
        "backfill", 3, owner=Owner(me.hostname, reaped_pid(), me.space)
    )
    here_alive = await store.runs.start("incremental", 3, owner=me)
    elsewhere = await store.runs.start("incremental", 3, owner=Owner("other-host", 1, None))
    # Daemons on another host: one heartbeating, one silent for longer than a lease, one gone.
    for worker in ("fresh", "stale"):
        await fleet.register_worker(worker, "other-host", 1)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(SyncWorker)
            .where(SyncWorker.worker_id == "stale")
            .values(heartbeat_at=utc_now() - timedelta(seconds=TTL + 60))
        )
    daemon_owner = Owner("other-host", 1, None)
    fresh = await store.runs.start("incremental", 0, worker_id="fresh", owner=daemon_owner)
    stale = await store.runs.start("incremental", 0, worker_id="stale", owner=daemon_owner)
    gone = await store.runs.start("incremental", 0, worker_id="gone", owner=daemon_owner)
    finished = await store.runs.start(
        "backfill", 3, owner=Owner(me.hostname, reaped_pid(), me.space)
    )
    await store.runs.finish(finished, "ok", {}, None)

    closed = await store.runs.close_abandoned(TTL)

    assert set(closed) == {here_dead, stale, gone}
    runs = await runs_by_id(store)
    for run_id in (here_dead, stale, gone):
        run = runs[run_id]
        assert run.status == "abandoned" and run.finished_at is not None
        assert run.error_summary.startswith(ABANDONED_SUMMARY)
    for run_id in (here_alive, elsewhere, fresh):
        assert runs[run_id].status == "running" and runs[run_id].finished_at is None
    assert runs[finished].status == "ok"
    assert runs[here_alive].hostname == me.hostname and runs[here_alive].pid == me.pid
    # Nothing left to prove: a second look changes nothing.
    assert await store.runs.close_abandoned(TTL) == {}


async def test_the_next_pass_closes_a_killed_pass(store: MirrorStore, database_url: str) -> None:
    dataset = SimDataset(seed=11, customers=3, mean_files=5)
    simulator = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY))
    url = await simulator.start("127.0.0.1", 0)
    try:
        me = current_owner()
        killed = await store.runs.start(
            "backfill", 3, owner=Owner(me.hostname, reaped_pid(), me.space)
        )
        report = await sync_pass(make_settings(url, database_url), store, PassMode.BACKFILL)
    finally:
        await simulator.stop()
    runs = await runs_by_id(store)
    assert runs[killed].status == "abandoned"
    assert f"process {runs[killed].pid} on {me.hostname}" in runs[killed].error_summary
    assert runs[report.run_id].status == "ok" and runs[report.run_id].pid == me.pid


async def test_a_dead_local_worker_leaves_the_fleet_with_its_run(store: MirrorStore) -> None:
    """A killed pass on PostgreSQL (or daemon) held leases: they are freed when its run is
    closed, and its fleet row goes, but only that very process's row."""
    me = current_owner()
    fleet = FleetStore(store.engine)
    await store.customers.import_rows(
        [
            CustomerRow(customer_id=i, user_id=None, external_user_id=None, sales_id=None)
            for i in (1, 2, 3)
        ]
    )
    await fleet.ensure_schedule_rows()
    dead_pid, other_pid = reaped_pid(), reaped_pid()
    refs = [c.ref for c in await store.customers.keys()]
    # A dead pass holding two customers; a worker of the same id restarted as another process
    # (its old run is dead, its row and its lease are the new process's); a silent remote one.
    await fleet.register_worker("incremental@x", me.hostname, dead_pid)
    await fleet.register_worker("daemon-1", me.hostname, me.pid)
    await fleet.register_worker("remote", "other-host", 1)
    assert len(await fleet.claim_chosen("incremental@x", refs[:2], TTL)) == 2
    assert len(await fleet.claim_chosen("daemon-1", refs[2:], TTL)) == 1
    dead = Owner(me.hostname, dead_pid, me.space)
    await store.runs.start("incremental", 2, worker_id="incremental@x", owner=dead)
    await store.runs.start(
        "incremental", 1, worker_id="daemon-1", owner=Owner(me.hostname, other_pid, me.space)
    )

    assert len(await store.runs.close_abandoned(TTL)) == 2

    async with store.engine.connect() as conn:
        workers = set((await conn.execute(select(SyncWorker.worker_id))).scalars())
        query = select(CustomerSchedule.customer_ref, CustomerSchedule.lease_owner)
        leases = {ref: owner for ref, owner in await conn.execute(query)}
    assert workers == {"daemon-1", "remote"}
    assert leases == {refs[0]: None, refs[1]: None, refs[2]: "daemon-1"}
