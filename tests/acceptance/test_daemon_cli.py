"""``tanma-sync daemon`` as an operator runs it: subprocesses, signals, a shared PostgreSQL.

Several daemons over one PostgreSQL split the customers and survive one of them being
SIGKILLed; SQLite refuses a second daemon. SIGTERM ends a daemon cleanly, within
SYNC_SHUTDOWN_TIMEOUT, with every lease handed back; a second signal ends it at once, and the
next run still finds a consistent mirror.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sync.mirror.database import create_engine
from sync.mirror.models import CustomerSchedule, CustomerSyncState, SyncRun, SyncWorker
from sync.sim import SimDataset
from tests.acceptance.conftest import Cli
from tests.helpers import APP_KEY, assert_mirror_equals, fetch_mirror_sync

DAEMON_ENV = {
    "SYNC_SCHEDULE": "1s",
    "SYNC_POLL_MAX_INTERVAL": "1h",
    "SYNC_MAX_STALENESS": "2h",
    "SYNC_FULL_SCHEDULE": "off",
    "SYNC_LEASE_TTL": "3s",
    "SYNC_SHUTDOWN_TIMEOUT": "6s",
    "SYNC_HTTP_LISTEN": "127.0.0.1:0",
    "SYNC_LOG_LEVEL": "info",
}


def query(database_url: str, statement: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(statement)).all()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def synced_count(database_url: str) -> int:
    rows = query(
        database_url,
        select(func.count()).where(CustomerSyncState.last_success_at.is_not(None)),
    )
    return rows[0][0]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_daemon(cli: Cli, tmp_path: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")  # a file, not a pipe: a full pipe would block
    return subprocess.Popen(
        cli.command("daemon"),
        cwd=cli.cwd,
        env={**cli.env, **DAEMON_ENV, "SYNC_WORKER_ID": name, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=timeout + 10)
    return code, time.monotonic() - started


def import_customers(cli: Cli, sim: Any) -> None:
    cli.env["TANMA_BASE_URL"] = sim.base_url
    path = cli.cwd / "customers.csv"
    path.write_text(sim.sim.dataset.customers_csv())
    assert cli("customers", "import", str(path)).code == 0


def test_daemons_share_one_postgres_and_take_over_a_killed_ones_customers(
    cli: Cli, sim_factory: Any, database_url: str, backend: str, tmp_path: Path
) -> None:
    dataset = SimDataset(seed=31, customers=240, mean_files=12)
    # 60 ms a request and small pages: the work lasts long enough to kill a daemon midway.
    sim = sim_factory(dataset, latency_ms=60, page_size_cap=100, rate_limit=120, rate_burst=24)
    import_customers(cli, sim)
    env = {"SYNC_RATE_LIMIT": "120", "SYNC_PAGE_SIZE": "4", "SYNC_CONCURRENCY": "4"}

    if backend == "sqlite":
        first = start_daemon(cli, tmp_path, "only", **env)
        try:
            wait_for(lambda: synced_count(database_url) > 0, 60, "the first daemon to sync")
            second = cli("daemon", **{**DAEMON_ENV, **env})
            assert second.code == 1
            assert "tanma-sync daemon" in second.err and "PostgreSQL" in second.err
            assert "Traceback" not in second.both
        finally:
            code, _ = stop(first, 6)
        assert code == 0
        return

    workers = {name: start_daemon(cli, tmp_path, name, **env) for name in ("w1", "w2", "w3")}
    try:
        wait_for(lambda: synced_count(database_url) >= 40, 90, "a sixth of the customers")
        workers["w2"].kill()
        killed_at = query(database_url, select(func.now()))[0][0]
        workers["w2"].wait(10)
        orphaned = {
            row.customer_ref
            for row in query(
                database_url,
                select(CustomerSchedule.customer_ref).where(CustomerSchedule.lease_owner == "w2"),
            )
        }
        wait_for(lambda: synced_count(database_url) == 240, 180, "every customer to be synced")
        # Let the survivors take the orphans over once the dead worker's leases expire.
        wait_for(
            lambda: (
                not query(
                    database_url,
                    select(CustomerSchedule.customer_ref).where(
                        CustomerSchedule.customer_ref.in_(orphaned),
                        CustomerSchedule.last_worker_id.not_in(["w1", "w3"]),
                    ),
                )
            ),
            60,
            "the killed daemon's customers to be taken over",
        )
    finally:
        results = {
            name: stop(process, 6) for name, process in workers.items() if process.poll() is None
        }
    for name, (code, seconds) in results.items():
        assert code == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
        assert seconds < 6 + 3, f"{name} took {seconds:.1f}s to stop"

    stats = sim.call(lambda: sim.sim.stats.as_dict())
    assert stats["overlaps"] == 0, stats["overlap_customers"]  # never two on one customer
    assert stats["over_limit"] == 0  # together they stayed under SYNC_RATE_LIMIT
    assert orphaned, "w2 held no lease when killed: kill it earlier"
    takeover = query(
        database_url,
        select(CustomerSyncState.last_success_at).where(
            CustomerSyncState.customer_ref.in_(orphaned)
        ),
    )
    assert all(row.last_success_at > killed_at for row in takeover)
    live = {row.worker_id for row in query(database_url, select(SyncWorker.worker_id))}
    # The survivors left; the killed one's row went once a survivor's pass saw its process gone.
    assert live == set()
    held = query(
        database_url,
        select(CustomerSchedule.customer_ref).where(CustomerSchedule.lease_owner.in_(["w1", "w3"])),
    )
    assert held == []
    by_worker = dict(
        query(
            database_url,
            select(SyncRun.worker_id, func.sum(SyncRun.customers_ok)).group_by(SyncRun.worker_id),
        )
    )
    assert {"w1", "w3"} <= set(by_worker)
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())
    for name in workers:
        assert APP_KEY not in (tmp_path / f"{name}.log").read_text()


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_mid_pass_stops_cleanly_and_the_next_run_completes(
    cli: Cli, sim_factory: Any, database_url: str, tmp_path: Path, signals: int
) -> None:
    dataset = SimDataset(seed=32, customers=80, mean_files=15)
    sim = sim_factory(dataset, latency_ms=150, page_size_cap=100)
    import_customers(cli, sim)
    daemon = start_daemon(cli, tmp_path, "solo", SYNC_PAGE_SIZE="3", SYNC_CONCURRENCY="4")
    try:
        wait_for(lambda: synced_count(database_url) >= 4, 60, "the pass to be under way")
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        if signals == 2:
            time.sleep(0.05)
            daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
        seconds = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
    log = (tmp_path / "solo.log").read_text()
    assert "Traceback" not in log
    if signals == 1:
        assert code == 0, log[-2000:]
        assert seconds < 6, f"took {seconds:.1f}s (SYNC_SHUTDOWN_TIMEOUT=6s)"
        assert query(database_url, select(SyncWorker.worker_id)) == []
        assert (
            query(
                database_url,
                select(CustomerSchedule.customer_ref).where(
                    CustomerSchedule.lease_owner.is_not(None)
                ),
            )
            == []
        )
        statuses = [row.status for row in query(database_url, select(SyncRun.status))]
        assert "running" not in statuses and "interrupted" in statuses
    else:
        assert code == 130 and seconds < 2, f"exit {code} after {seconds:.1f}s"
    assert synced_count(database_url) < 80, "the pass ended before the signal: slow it down"

    done = cli("run")
    assert done.code == 0, done.both
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())
    assert APP_KEY not in log
