"""The daemon in-process over the simulator, on both databases: the adaptive schedule and its
staleness bound, metrics that agree with the database, health that notices bad credentials."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from sync.api.client import TanmaClient
from sync.daemon import daemon as daemon_module
from sync.daemon.daemon import Daemon
from sync.mirror.fleet import FleetStore
from sync.mirror.models import CustomerSchedule, CustomerSyncState, SyncRun, utc_now
from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY, make_settings
from tests.integration.test_engine import import_all
from tests.waiting import until

STALENESS = 4.0
# Bounds on waits for the daemon to reach a state; generous, as they only catch a hang.
SETTLE_S = 60.0


def daemon_settings(url: str, database_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "sync_schedule": "0.25s",
        "sync_poll_max_interval": "2s",
        "sync_max_staleness": f"{STALENESS}s",
        "sync_full_schedule": "off",
        "sync_lease_ttl": "6s",
        "sync_http_listen": "127.0.0.1:0",
        "sync_shutdown_timeout": "5s",
        "sync_page_size": 20,
    }
    values.update(overrides)
    return make_settings(url, database_url, **values)


@contextlib.asynccontextmanager
async def running_daemon(settings: Any, store: MirrorStore) -> AsyncIterator[Daemon]:
    async with TanmaClient(settings) as client:
        daemon = Daemon(settings, store, FleetStore(store.engine), client, worker_id="test-worker")
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 30)
            yield daemon
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 15) == 0


async def get(daemon: Daemon, path: str) -> tuple[int, str]:
    assert daemon.listener is not None
    url = f"http://127.0.0.1:{daemon.listener.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def everyone_synced(store: MirrorStore, customers: int) -> bool:
    async with store.engine.connect() as conn:
        synced = await conn.scalar(
            select(func.count()).where(CustomerSyncState.last_success_at.is_not(None))
        )
    return synced == customers


async def last_run_id(store: MirrorStore) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.max(SyncRun.id))) or 0)


async def a_pass_ended_after(store: MirrorStore, run_id: int) -> bool:
    """Whether a pass that began after run ``run_id`` has ended."""
    async with store.engine.connect() as conn:
        ended = await conn.scalar(
            select(func.count()).where(SyncRun.id > run_id, SyncRun.finished_at.is_not(None))
        )
    return bool(ended)


async def no_lease_held(store: MirrorStore) -> bool:
    async with store.engine.connect() as conn:
        held = await conn.scalar(
            select(func.count()).where(CustomerSchedule.lease_owner.is_not(None))
        )
    return held == 0


async def stalest_age(store: MirrorStore) -> float:
    stalest = await FleetStore(store.engine).stalest()
    assert stalest is not None
    return (utc_now() - stalest.since).total_seconds()


async def test_active_customers_are_polled_more_often_and_none_goes_stale(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=11, customers=12, mean_files=5)
    async with Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY)) as simulator:
        await import_all(store, dataset)
        settings = daemon_settings(simulator.base_url, database_url)
        active = 0
        ages: list[float] = []
        async with running_daemon(settings, store):
            await until(
                lambda: everyone_synced(store, 12), SETTLE_S, "the first sweep to sync everyone"
            )
            simulator.reset_stats()
            for _ in range(32):  # 8 s: new files for one customer every quarter second
                dataset.add_record(active)
                await asyncio.sleep(0.25)
                ages.append(await stalest_age(store))
        per_customer = simulator.stats.as_dict()["per_customer"]
        active_id = str(dataset.customer(active).customer_id)
        quiet = [n for key, n in per_customer.items() if key != active_id]
    assert per_customer[active_id] >= 2 * max(quiet), per_customer
    assert max(ages) <= STALENESS, f"stalest customer reached {max(ages):.2f}s"


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


async def test_metrics_parse_and_their_counters_match_the_database(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=12, customers=25, mean_files=8, poison_rate=0.05)
    async with Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY)) as simulator:
        await import_all(store, dataset)
        settings = daemon_settings(simulator.base_url, database_url)
        async with running_daemon(settings, store) as daemon:
            await until(lambda: everyone_synced(store, 25), SETTLE_S, "every customer to sync")
            dataset.advance(new_rate=0.5, late_rate=0.2, delete_rate=0, update_rate=0.1)
            advanced_after = await last_run_id(store)
            await until(
                lambda: a_pass_ended_after(store, advanced_after),
                SETTLE_S,
                "a pass begun after the new files to end",
            )
            status, served = await get(daemon, "/metrics")
        # Stopped: the database and the counters have settled; the same exposition, final.
        text = generate_latest(daemon.sweeper.metrics.registry).decode()
        sim_requests = simulator.stats.as_dict()["requests_total"]
    assert status == 200
    assert metric_values(served).keys() == metric_values(text).keys()
    values = metric_values(text)
    async with store.engine.connect() as conn:
        runs = (
            await conn.execute(
                select(
                    func.sum(SyncRun.records_inserted),
                    func.sum(SyncRun.records_updated),
                    func.sum(SyncRun.records_rejected),
                    func.sum(SyncRun.customers_ok),
                    func.sum(SyncRun.customers_failed),
                    func.sum(SyncRun.requests),
                    func.count(),
                ).where(SyncRun.worker_id == "test-worker")
            )
        ).one()
    inserted, updated, rejected, ok, failed, requests, passes = runs
    assert passes >= 2 and inserted > 0 and rejected > 0
    assert values[("tanma_sync_records_total", (("action", "inserted"),))] == inserted
    assert values[("tanma_sync_records_total", (("action", "updated"),))] == updated
    assert values[("tanma_sync_records_total", (("action", "rejected"),))] == rejected
    assert values[("tanma_sync_customers_total", (("result", "synced"),))] == ok
    assert values[("tanma_sync_customers_total", (("result", "failed"),))] == failed
    by_outcome = sum(v for (name, _), v in values.items() if name == "tanma_sync_requests_total")
    assert by_outcome == requests == sim_requests
    assert values[("tanma_sync_live_workers", ())] == 1
    assert values[("tanma_sync_rate_limit_share", ())] == settings.sync_rate_limit
    assert values[("tanma_sync_pass_duration_seconds_count", ())] == passes
    assert APP_KEY not in text


async def test_health_turns_degraded_when_the_signature_is_rejected(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=13, customers=3, mean_files=2)
    config = SimConfig(app_id=APP_ID, app_key="not-the-key-we-sign-with")
    async with Simulator(dataset, config) as simulator:
        await import_all(store, dataset)
        settings = daemon_settings(simulator.base_url, database_url)
        async with running_daemon(settings, store) as daemon:
            served: list[tuple[int, str]] = []

            async def degraded() -> bool:
                served.append(await get(daemon, "/readyz"))
                return served[-1][0] == 503

            await until(degraded, SETTLE_S, "/readyz to turn degraded")
            # A failed sweep hands its leases back, in its last step: health may turn degraded
            # a moment before that.
            await until(
                lambda: no_lease_held(store), SETTLE_S, "the failed sweep's leases to go back"
            )
    status, body = served[-1]
    assert status == 503, body
    assert '"status": "degraded"' in body and "credentials rejected" in body
    assert APP_KEY not in body


async def test_after_a_signalled_shutdown_a_further_signal_still_forces_the_exit(
    store: MirrorStore, database_url: str
) -> None:
    """Once the daemon's loop handlers are gone, its caller still closes the client and the
    database; a signal then must take the forced exit (130), not the default action (a process
    killed by SIGTERM, status -15)."""
    dataset = SimDataset(seed=14, customers=3, mean_files=2)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        async with Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY)) as simulator:
            await import_all(store, dataset)
            settings = daemon_settings(simulator.base_url, database_url)
            async with TanmaClient(settings) as client:
                daemon = Daemon(settings, store, FleetStore(store.engine), client)
                task = asyncio.create_task(daemon.run())
                await asyncio.wait_for(daemon.started.wait(), 30)
                daemon._on_signal(signal.SIGTERM)  # what the loop calls on the first SIGTERM
                assert await asyncio.wait_for(task, 15) == 0
                after = {sig: signal.getsignal(sig) for sig in before}
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert after == {sig: daemon_module._forced_exit for sig in before}
