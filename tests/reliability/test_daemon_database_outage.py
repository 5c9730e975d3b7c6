"""The database goes away while the daemon's lease feed claims, finishes and hands back
customers (PostgreSQL, through a TCP proxy that is cut and restored).

The daemon must log what happened in one line per event, never a traceback; it must not crash
or stop sweeping; once the database is back the next sweep must complete; and when it stops no
lease may be left held and no run left `running`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from sync.api.client import TanmaClient
from sync.daemon.daemon import Daemon
from sync.engine.db_retry import DB_RETRY_WAITS_S
from sync.mirror import database as db
from sync.mirror.fleet import FleetStore
from sync.mirror.models import CustomerSchedule, SyncRun
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import make_settings
from tests.reliability.conftest import SEED
from tests.reliability.figures import Figures
from tests.reliability.mirror_checks import problems, read_upstream, snapshot_of
from tests.reliability.support import import_customers
from tests.reliability.tcp_proxy import TcpProxy

# Cuts go on until both a claim and a hand-back have met the outage (or this many cuts).
MAX_OUTAGES = 12
# Longer than a page write's retries in place: a shorter cut is ridden out by the workers'
# writes, which then rarely leave a claim or a hand-back to meet it.
OUTAGE_S = sum(DB_RETRY_WAITS_S) + 1.0


def _daemon_settings(base_url: str, database_url: str) -> Any:
    # Sweeps one after another, one page per customer and two workers (so a claim every few
    # requests), at a pace that keeps a sweep going for a couple of seconds: claims, finishes
    # and hand-backs happen all the time, so the cuts meet them.
    return make_settings(
        base_url,
        database_url,
        sync_schedule="0.5s",
        sync_poll_max_interval="1s",
        sync_max_staleness="1h",
        sync_full_schedule="off",
        sync_lease_ttl="6s",
        sync_http_listen="127.0.0.1:0",
        sync_shutdown_timeout="10s",
        sync_page_size=100,
        sync_concurrency=2,
        sync_rate_limit=20,
    )


# What the outage must have met: a claim part-way through a sweep (the sweep ends early with
# one line) and the hand-back at a sweep's end.
MET = ("sweep_incomplete", "leases_not_released")


def _seen(logs: list[dict[str, Any]], *events: str) -> bool:
    return set(events) <= {str(e.get("event")) for e in logs}


async def _until(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"seed {SEED}: no {what} within {limit_s} s"
        await asyncio.sleep(0.05)


async def test_database_outage_while_the_lease_feed_works(
    pg_url: str, sim_factory, figures: Figures, case_name: str
) -> None:
    dataset = SimDataset(seed=45, customers=40, mean_files=25)
    sim = sim_factory(dataset, latency_ms=3)
    target = make_url(pg_url)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = str(target.set(port=proxy.port))
        engine = db.create_engine(proxied)
        await db.upgrade(engine)
        store = MirrorStore(engine)
        try:
            await import_customers(store, dataset)
            settings = _daemon_settings(sim.base_url, proxied)
            with structlog.testing.capture_logs() as logs:
                async with TanmaClient(settings) as client:
                    daemon = Daemon(settings, store, FleetStore(engine), client, worker_id="w1")
                    task = asyncio.create_task(daemon.run())
                    await asyncio.wait_for(daemon.started.wait(), 30)
                    while not _seen(logs, *MET) and proxy.cuts < MAX_OUTAGES:
                        # A moment into a sweep, while workers claim and finish customers.
                        await _until(lambda: daemon.sweeper._feed is not None, 30, "sweep")
                        await asyncio.sleep(0.3 + 0.1 * proxy.cuts)
                        await asyncio.to_thread(proxy.cut)
                        await asyncio.sleep(OUTAGE_S)
                        await asyncio.to_thread(proxy.restore)
                    back = loop.time()

                    def swept_since_back() -> bool:
                        done = daemon.sweeper.state.last_ok_pass_at
                        return done is not None and done > back and not task.done()

                    await _until(swept_since_back, 60, "completed sweep after the outages")
                    dataset_now = await _mirror_problems(proxied, sim, dataset, settings)
                    daemon.request_stop()
                    code = await asyncio.wait_for(task, 30)
        finally:
            leases, running = await _leftovers(store)
            await engine.dispose()
            loop.set_exception_handler(None)

    assert code == 0
    assert not unhandled, unhandled
    assert leases == 0, f"{leases} leases still held after the daemon stopped"
    assert running == 0, f"{running} runs left running"
    assert not dataset_now, dataset_now[:5]
    tracebacks = [e for e in logs if e.get("exc_info") or e.get("event") == "internal_error"]
    assert not tracebacks, tracebacks[:3]
    internal = [e for e in logs if "internal error" in str(e.get("reason", ""))]
    assert not internal, internal[:3]
    assert _seen(logs, *MET), f"seed {SEED}: {proxy.cuts} cuts never met a claim and a hand-back"
    trouble = [e for e in logs if e.get("log_level") in ("warning", "error")]
    assert trouble, "the outages were not noticed"
    for entry in trouble:
        assert all("\n" not in str(value) for value in entry.values()), entry
    figures.add(case_name, daemon_db_outages=proxy.cuts)
    events = sorted({str(e.get("event")) for e in trouble})
    figures.note(case_name, daemon_warnings=len(trouble), daemon_warning_events=", ".join(events))


async def _mirror_problems(url: str, sim: Any, dataset: SimDataset, settings: Any) -> list[str]:
    """After a completed sweep the mirror is consistent (customers may still be mid-schedule)."""
    snapshot = await snapshot_of(url)
    return problems(snapshot, read_upstream(sim, dataset), settings.lookback_ids, settled=False)


async def _leftovers(store: MirrorStore) -> tuple[int, int]:
    async with store.engine.connect() as conn:
        leases = await conn.scalar(
            select(func.count()).where(CustomerSchedule.lease_owner.is_not(None))
        )
        running = await conn.scalar(select(func.count()).where(SyncRun.status == "running"))
    return int(leases or 0), int(running or 0)
