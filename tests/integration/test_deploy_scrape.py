"""A real daemon's /metrics against deploy/: every series the dashboard and the alert rules
read is served, and promtool's linter finds nothing to say about the exposition."""

from __future__ import annotations

import asyncio
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.deploy_files import named_metrics, promtool
from tests.helpers import APP_ID, APP_KEY
from tests.integration.test_daemon import SETTLE_S, daemon_settings, everyone_synced, get
from tests.integration.test_daemon import running_daemon as started
from tests.integration.test_engine import import_all
from tests.waiting import until


async def _scrape(store: MirrorStore, database_url: str) -> str:
    dataset = SimDataset(seed=31, customers=6, mean_files=4)
    async with Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY)) as simulator:
        await import_all(store, dataset)
        settings = daemon_settings(simulator.base_url, database_url)
        async with started(settings, store) as daemon:
            await until(lambda: everyone_synced(store, 6), SETTLE_S, "every customer to sync")
            status, text = await get(daemon, "/metrics")
    assert status == 200
    return text


async def test_the_dashboard_and_rules_read_only_metrics_a_daemon_serves(
    store: MirrorStore, database_url: str
) -> None:
    text = await _scrape(store, database_url)
    served = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert named_metrics() - served == set()
    # The health gauges are judged at scrape time, so a first scrape already has them.
    assert "tanma_sync_api_up 1.0" in text
    assert "tanma_sync_credentials_ok 1.0" in text


async def test_promtool_finds_nothing_wrong_with_the_exposition(
    store: MirrorStore, database_url: str
) -> None:
    tool = promtool()
    text = await _scrape(store, database_url)
    done = await asyncio.to_thread(
        subprocess.run,
        [tool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
