"""Crash safety of discovery: SIGKILL a real `tanma-sync customers discover` at seeded random
instants, over and over (incremental and full, with customers arriving between runs), then let
one discovery finish: the customers table equals the simulator's customers exactly, and no run
is left `running`."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import func, select

from sync.mirror import database as db
from sync.mirror.models import Customer, SyncRun
from sync.sim import SimDataset
from tests.cli_support import Cli, run_and_kill
from tests.reliability.figures import Figures

KILLS = 12


async def _table(database_url: str) -> tuple[dict[int, object], int]:
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Customer.customer_id, Customer.raw))).all()
            running = await conn.scalar(
                select(func.count()).select_from(SyncRun).where(SyncRun.status == "running")
            )
    finally:
        await engine.dispose()
    return {row.customer_id: row.raw for row in rows}, int(running or 0)


def test_sigkill_during_discovery_then_finish_equals_the_simulator(
    cli: Cli,
    sim_factory,
    database_url: str,
    rng: random.Random,
    figures: Figures,
    case_name: str,
) -> None:
    dataset = SimDataset(seed=rng.randrange(10**6), customers=1500, mean_files=0)
    sim = sim_factory(dataset, latency_ms=2, search_max_results=200)
    # Small pages, a small cap and a modest pace: a discovery takes a second or two, so most
    # kills land mid-walk (windows split, pages half written).
    cli.env |= {
        "TANMA_BASE_URL": sim.base_url,
        "TANMA_SEARCH_MAX_RESULTS": "200",
        "SYNC_DISCOVERY_PAGE_SIZE": "20",
        "SYNC_RATE_LIMIT": "80",
        "SYNC_LOG_LEVEL": "info",
    }
    landed = 0
    for attempt in range(KILLS * 3):
        if landed >= KILLS:
            break
        args = (
            ("customers", "discover", "--full") if rng.random() < 0.4 else ("customers", "discover")
        )
        kill = run_and_kill(cli, args, rng.uniform(0.3, 2.5), from_event=None)
        assert "Traceback" not in kill.err, kill.err[-2000:]
        if kill.landed:
            landed += 1
        else:
            assert kill.code == 0, kill.out + kill.err[-2000:]
        if attempt % 3 == 0:
            sim.call(dataset.add_customers, 5)
    assert landed >= KILLS // 2, f"only {landed} kills landed mid-discovery"

    final = cli("customers", "discover", "--full", timeout=300)
    assert final.code == 0, final.both[-3000:]
    table, running = asyncio.run(_table(database_url))
    expected = sim.call(sim.sim.directory.expected_customers)
    assert table.keys() == expected.keys()
    assert all(table[cid] == item for cid, item in expected.items())
    assert running == 0
    figures.add(case_name, discovery_kills_landed=landed)
