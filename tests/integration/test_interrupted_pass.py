"""A pass stopped before its end is recorded, counted and exited on as interrupted, everywhere
from the one status its run row holds: a daemon stopped mid-sweep counts no ok pass, leaves the
last-ok time health reads, and ``--burst`` exits 130."""

from __future__ import annotations

import asyncio

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from sync.api.client import TanmaClient
from sync.daemon.daemon import Daemon, burst_exit_code
from sync.domain.exits import ExitCode
from sync.domain.pager import PassMode
from sync.domain.tally import RunStatus, RunTotals
from sync.engine.feeds import CustomerOutcome
from sync.engine.passes import RunReport
from sync.mirror.fleet import FleetStore
from sync.mirror.models import SyncRun
from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY, make_settings
from tests.integration.test_engine import import_all


def report(status: RunStatus) -> RunReport:
    return RunReport(1, PassMode.INCREMENTAL, status, 3, RunTotals(), 1.0)


def test_burst_exits_with_the_status_its_run_recorded() -> None:
    assert burst_exit_code(None, None) is ExitCode.OK  # nothing was due
    assert burst_exit_code(report(RunStatus.OK), None) is ExitCode.OK
    assert burst_exit_code(report(RunStatus.PARTIAL), None) is ExitCode.PARTIAL
    assert burst_exit_code(report(RunStatus.INTERRUPTED), None) is ExitCode.INTERRUPTED
    assert burst_exit_code(None, "credentials rejected") is ExitCode.FATAL


def passes_by_status(daemon: Daemon) -> dict[str, float]:
    text = generate_latest(daemon.sweeper.metrics.registry).decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "tanma_sync_passes"]
    return {s.labels["status"]: s.value for s in family.samples if s.name.endswith("_total")}


async def test_a_burst_stopped_mid_sweep_is_interrupted_not_ok(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=31, customers=60, mean_files=20)
    config = SimConfig(app_id=APP_ID, app_key=APP_KEY, latency_ms=60)
    async with Simulator(dataset, config) as simulator:
        await import_all(store, dataset)
        settings = make_settings(
            simulator.base_url,
            database_url,
            sync_full_schedule="off",
            sync_http_listen="off",
            sync_page_size=10,
            sync_concurrency=2,
        )
        async with TanmaClient(settings) as client:
            daemon = Daemon(settings, store, FleetStore(store.engine), client, burst=True)
            first_finished = asyncio.Event()
            count = daemon.sweeper.count_outcome

            def counted(outcome: CustomerOutcome) -> None:
                count(outcome)
                first_finished.set()

            daemon.sweeper.count_outcome = counted
            run = asyncio.create_task(daemon.run())
            await asyncio.wait_for(first_finished.wait(), 60)
            daemon.request_stop()
            code = await asyncio.wait_for(run, 30)

    assert code == ExitCode.INTERRUPTED
    async with store.engine.connect() as conn:
        statuses = list((await conn.execute(select(SyncRun.status))).scalars())
    assert statuses == [RunStatus.INTERRUPTED.value]
    passes = passes_by_status(daemon)
    assert passes[RunStatus.INTERRUPTED.value] == 1
    assert passes[RunStatus.OK.value] == 0
    assert daemon.sweeper.state.last_ok_pass_at is None
