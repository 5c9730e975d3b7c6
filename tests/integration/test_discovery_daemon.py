"""The daemon discovers customers on its schedules and syncs new ones at once; on PostgreSQL
daemons sharing a database discover one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select

from sync.api.client import TanmaClient
from sync.daemon.daemon import Daemon
from sync.mirror import database as db
from sync.mirror.fleet import FleetStore
from sync.mirror.models import Customer, CustomerSyncState, SyncRun
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.cli_support import sim_threads
from tests.helpers import make_settings
from tests.waiting import until

SETTLE_S = 60.0


def daemon_settings(url: str, database_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "sync_schedule": "0.5s",
        "sync_poll_max_interval": "2s",
        "sync_max_staleness": "60s",
        "sync_full_schedule": "off",
        "sync_lease_ttl": "6s",
        "sync_http_listen": "off",
        "sync_shutdown_timeout": "5s",
        "sync_discovery_schedule": "0.5s",
        "sync_discovery_full_schedule": "2s",
    }
    values.update(overrides)
    return make_settings(url, database_url, **values)


@contextlib.asynccontextmanager
async def running_daemon(settings: Any, store: MirrorStore, worker: str) -> AsyncIterator[Daemon]:
    async with TanmaClient(settings) as client:
        daemon = Daemon(settings, store, FleetStore(store.engine), client, worker_id=worker)
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 30)
            yield daemon
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 15) == 0


async def synced_customers(store: MirrorStore) -> int:
    async with store.engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count()).where(CustomerSyncState.last_success_at.is_not(None))
            )
            or 0
        )


async def customer_count(store: MirrorStore) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(Customer)) or 0)


async def test_the_daemon_discovers_customers_and_syncs_new_ones(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=21, customers=40, mean_files=3)
    with sim_threads() as start:
        sim = start(dataset)
        settings = daemon_settings(sim.base_url, database_url)
        async with running_daemon(settings, store, "discoverer") as daemon:
            await until(
                lambda: _all_synced(store, 40), SETTLE_S, "every discovered customer synced"
            )
            added = sim.call(dataset.add_customers, 2)
            for customer in added:
                sim.call(dataset.add_record, customer.index)
            await until(lambda: _all_synced(store, 42), SETTLE_S, "new customers synced")
            await until(
                lambda: (
                    daemon.discoveries.last_report is not None
                    and daemon.discoveries.last_report.full
                ),
                SETTLE_S,
                "a full discovery",
            )
        async with store.engine.connect() as conn:
            modes = set((await conn.execute(select(SyncRun.mode))).scalars())
        assert {"discover", "discover_full", "incremental"} <= modes


async def _all_synced(store: MirrorStore, customers: int) -> bool:
    return await customer_count(store) == customers and await synced_customers(store) == customers


async def test_daemons_sharing_postgresql_discover_one_at_a_time(
    backend: str, database_url: str
) -> None:
    if backend != "postgresql":
        # SQLite serves one daemon only (a second refuses to start): nothing to share.
        return
    dataset = SimDataset(seed=22, customers=300, mean_files=0)
    with sim_threads() as start:
        sim = start(dataset, latency_ms=5)
        settings = daemon_settings(
            sim.base_url,
            database_url,
            sync_discovery_page_size=20,
            sync_discovery_schedule="0.2s",
            sync_discovery_full_schedule="0.3s",
        )
        engines = [db.create_engine(database_url) for _ in range(2)]
        try:
            await db.upgrade(engines[0])
            stores = [MirrorStore(engine) for engine in engines]
            async with (
                running_daemon(settings, stores[0], "first"),
                running_daemon(settings, stores[1], "second"),
            ):
                await until(
                    lambda: _discoveries_finished(stores[0], 6), SETTLE_S, "six discoveries"
                )
            async with engines[0].connect() as conn:
                runs = (
                    await conn.execute(
                        select(SyncRun.started_at, SyncRun.finished_at)
                        .where(SyncRun.mode.in_(["discover", "discover_full"]))
                        .order_by(SyncRun.started_at)
                    )
                ).all()
            assert await customer_count(stores[0]) == 300
        finally:
            for engine in engines:
                await engine.dispose()
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None
        assert earlier.finished_at <= later.started_at, "two discoveries overlapped"


async def _discoveries_finished(store: MirrorStore, count: int) -> bool:
    async with store.engine.connect() as conn:
        done = await conn.scalar(
            select(func.count())
            .select_from(SyncRun)
            .where(
                SyncRun.mode.in_(["discover", "discover_full"]), SyncRun.finished_at.is_not(None)
            )
        )
    return int(done or 0) >= count
