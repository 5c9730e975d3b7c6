"""Clock skew: the server's clock is ten minutes ahead of or behind ours (the simulator's clock
offset; its Date header tells the truth about its own clock, as a real server's does).

The first request is refused with code 1003; the client takes the offset from that answer's
Date header, and from then on every request is on time: exactly one 1003 per run, not one per
request and not one per concurrent worker.
"""

from __future__ import annotations

import asyncio

import pytest

from sync.api.client import TanmaClient
from sync.domain.customers import CustomerKey
from sync.domain.errors import ClockSkew
from sync.domain.pager import PassMode
from sync.engine.passes import SyncEngine
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import assert_mirror_equals, fetch_mirror, make_settings
from tests.reliability.figures import Figures
from tests.reliability.support import import_customers

SKEW_S = 600
# The Date header has whole seconds; the correction may be off by up to one, plus a round trip.
OFFSET_SLACK_MS = 1500


@pytest.mark.parametrize("direction", [+1, -1], ids=["server-ahead", "server-behind"])
async def test_a_skewed_clock_costs_one_1003_per_run(
    store: MirrorStore,
    database_url: str,
    sim_factory,
    direction: int,
    figures: Figures,
    case_name: str,
) -> None:
    dataset = SimDataset(seed=31, customers=16, mean_files=12)
    sim = sim_factory(dataset, clock_offset_s=direction * SKEW_S, timestamp_window_s=300)
    await import_customers(store, dataset)
    # Four workers and a fast pace: without care, the first four requests all go out before
    # the first 1003 comes back.
    settings = make_settings(sim.base_url, database_url, sync_concurrency=4, sync_page_size=5)
    for _ in range(2):  # each run starts from our own clock again
        async with TanmaClient(settings) as client:
            report = await SyncEngine(settings, store, client).run_pass(
                PassMode.BACKFILL, await store.customers.keys()
            )
        assert report.status == "ok", report.failures
        assert abs(client.clock_offset_ms - direction * SKEW_S * 1000) <= OFFSET_SLACK_MS
    stats = sim.call(sim.sim.stats.as_dict)
    refused = stats["outcomes"].get("time_error_1003", 0)
    figures.add(case_name, clock_1003_answers=refused, clock_runs=2)
    assert refused == 2, f"{refused} answers of code 1003 in two runs: {stats['outcomes']}"
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


async def test_concurrent_first_requests_wait_for_the_clock(sim_factory, tmp_path) -> None:
    """Requests started together on a skewed clock would all come back 1003 (workers start in
    parallel, most visibly on PostgreSQL): until an answer shows the clock right or corrected,
    requests go one at a time, so a run sees exactly one 1003."""
    dataset = SimDataset(seed=32, customers=4, mean_files=3)
    sim = sim_factory(dataset, clock_offset_s=SKEW_S)
    settings = make_settings(
        sim.base_url, f"sqlite:///{tmp_path / 'unused.db'}", sync_rate_limit=1_000_000
    )
    keys = [
        CustomerKey(i, c.customer_id, None, None, None)
        for i, c in enumerate(dataset.iter_customers())
    ]
    async with TanmaClient(settings) as client:
        pages = await asyncio.gather(*(client.list_files(key, None, 10) for key in keys))
    assert len(pages) == 4
    assert sim.call(lambda: sim.sim.stats.outcomes["time_error_1003"]) == 1


async def test_a_1003_does_not_use_up_the_only_attempt(
    store: MirrorStore, database_url: str, sim_factory
) -> None:
    """With SYNC_MAX_ATTEMPTS=1 the 1003 that corrects the clock must not be the request's one
    attempt: the attempt after such a 1003 is extra, so every customer still syncs."""
    dataset = SimDataset(seed=33, customers=6, mean_files=12)
    sim = sim_factory(dataset, clock_offset_s=SKEW_S, timestamp_window_s=300)
    await import_customers(store, dataset)
    settings = make_settings(sim.base_url, database_url, sync_max_attempts=1, sync_page_size=5)
    async with TanmaClient(settings) as client:
        report = await SyncEngine(settings, store, client).run_pass(
            PassMode.BACKFILL, await store.customers.keys()
        )
    assert report.status == "ok", report.failures
    assert report.totals.customers_ok == 6
    assert sim.call(lambda: sim.sim.stats.outcomes["time_error_1003"]) == 1
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_a_server_that_always_answers_1003_still_runs_out(
    sim_factory, tmp_path, max_attempts: int
) -> None:
    """The extra attempt is once per request: a server that refuses every timestamp (a negative
    window) costs SYNC_MAX_ATTEMPTS + 1 requests, then the request fails."""
    dataset = SimDataset(seed=34, customers=1, mean_files=3)
    sim = sim_factory(dataset, clock_offset_s=SKEW_S, timestamp_window_s=-1.0)
    settings = make_settings(
        sim.base_url, f"sqlite:///{tmp_path / 'unused.db'}", sync_max_attempts=max_attempts
    )
    customer = next(iter(dataset.iter_customers()))
    async with TanmaClient(settings) as client:
        with pytest.raises(ClockSkew):
            await client.list_files(
                CustomerKey(1, customer.customer_id, None, None, None), None, 10
            )
    assert client.requests == max_attempts + 1
    assert sim.call(lambda: sim.sim.stats.outcomes["time_error_1003"]) == max_attempts + 1
