"""Failure behaviour through the real CLI: a dead API, SIGTERM, a second writer, a daemon
beside a pass, the demo on somebody else's database, customers that never return a file."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from sync.mirror.models import CustomerSchedule, CustomerSyncState, SyncRun
from sync.sim import SimDataset
from tests.acceptance.test_cli import no_trace, synced_customers
from tests.acceptance.test_daemon_cli import DAEMON_ENV, query, start_daemon, stop
from tests.cli_support import Cli, clean_env
from tests.helpers import assert_mirror_equals, fetch_mirror_sync
from tests.waiting import until_sync

BREAKER_CUSTOMERS = 8  # the default of SYNC_BREAKER_CUSTOMERS


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plain_lines(text: str) -> list[str]:
    """The lines of stderr that are not structured log records: what a person reads."""
    lines = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            lines.append(line)
    return [line for line in lines if line.strip()]


def import_ids(cli: Cli, ids: range) -> None:
    path = cli.cwd / "ids.csv"
    path.write_text(
        "customer_id,user_id,external_user_id,sales_id\n" + "".join(f"{i},,,\n" for i in ids)
    )
    assert cli("customers", "import", str(path)).code == 0


def import_dataset(cli: Cli, dataset: SimDataset, base_url: str) -> None:
    cli.env["TANMA_BASE_URL"] = base_url
    path = cli.cwd / "customers.csv"
    path.write_text(dataset.customers_csv(), "utf-8")
    assert cli("customers", "import", str(path)).code == 0


def failed_count(database_url: str) -> int:
    rows = query(
        database_url, select(func.count()).where(CustomerSyncState.last_error.is_not(None))
    )
    return int(rows[0][0])


# -- an unreachable API ----------------------------------------------------------------------


def test_a_dead_api_stops_the_pass_with_one_line_and_exit_1(cli: Cli, database_url: str) -> None:
    import_ids(cli, range(1, 201))
    port = closed_port()
    result = cli("run", TANMA_BASE_URL=f"http://127.0.0.1:{port}")
    assert result.code == 1, result.both
    said = plain_lines(result.err)
    assert len(said) == 1, said
    assert said[0].startswith(f"error: API unreachable: 127.0.0.1:{port}: connection refused")
    no_trace(result.both)
    # The breaker stopped the pass within its bound; customers never tried are not failed.
    assert 0 < failed_count(database_url) <= BREAKER_CUSTOMERS
    (status, summary), *_ = query(
        database_url, select(SyncRun.status, SyncRun.error_summary).order_by(SyncRun.id.desc())
    )
    assert status == "failed" and summary.startswith("API unreachable")


def test_daemon_burst_against_a_dead_api_prints_its_summary_and_exits_1(
    cli: Cli, database_url: str
) -> None:
    import_ids(cli, range(1, 61))
    result = cli(
        "daemon", "--burst", **{**DAEMON_ENV, "TANMA_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    )
    assert result.code == 1, result.both
    summary = result.out.strip().splitlines()[-1]
    assert summary.startswith("sweep: ") and "0 synced" in summary, summary
    assert "stopped: API unreachable" in summary and "backlog" in summary
    no_trace(result.both)
    # Customers the sweep did not reach are still due, not planned as failed.
    planned = query(
        database_url, select(func.count()).where(CustomerSchedule.next_due_at.is_not(None))
    )[0][0]
    assert planned <= BREAKER_CUSTOMERS
    assert failed_count(database_url) <= BREAKER_CUSTOMERS


def test_daemon_burst_prints_the_sweep_summary(
    cli: Cli, sim_factory: Any, database_url: str
) -> None:
    dataset = SimDataset(seed=51, customers=12, mean_files=4)
    sim = sim_factory(dataset)
    import_dataset(cli, dataset, sim.base_url)
    result = cli("daemon", "--burst", **DAEMON_ENV)
    assert result.code == 0, result.both
    summary = result.out.strip().splitlines()[-1]
    assert summary.startswith("sweep: 12 customers due, 12 synced, 0 failed, 0 handed back")
    assert "backlog 0" in summary and "next due 20" in summary, summary
    assert any(json.loads(line).get("event") == "sweep_summary" for line in result.err.splitlines())


# -- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_mid_backfill_is_an_interrupted_run_with_its_counts(
    cli: Cli, sim_factory: Any, database_url: str
) -> None:
    dataset = SimDataset(seed=52, customers=120, mean_files=30)
    sim = sim_factory(dataset, latency_ms=15)
    import_dataset(cli, dataset, sim.base_url)
    cli.env |= {"SYNC_PAGE_SIZE": "5", "SYNC_CONCURRENCY": "2"}
    process = cli.start("backfill")
    first = process.stderr.readline()
    assert json.loads(first)["event"] == "pass_started", first
    until_sync(lambda: synced_customers(database_url) >= 2, 60, "two customers to be synced")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert plain_lines(err) == ["interrupted"]
    no_trace(out + err)
    (status, ok, inserted), *_ = query(
        database_url,
        select(SyncRun.status, SyncRun.customers_ok, SyncRun.records_inserted),
    )
    assert status == "interrupted" and ok >= 2 and inserted > 0
    assert cli("run").code == 0
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())


# -- one writer per SQLite mirror, leases on PostgreSQL ---------------------------------------


def slow_backfill(cli: Cli, sim_factory: Any, database_url: str) -> tuple[Any, SimDataset]:
    # About 240 pages of 100 ms, two at a time: some 12 s of work, room for a second command
    # to start (and be turned away, or wait) on a loaded machine.
    dataset = SimDataset(seed=53, customers=60, mean_files=20)
    sim = sim_factory(dataset, latency_ms=100, rate_limit=200, rate_burst=20)
    import_dataset(cli, dataset, sim.base_url)
    cli.env |= {"SYNC_PAGE_SIZE": "5", "SYNC_CONCURRENCY": "2", "SYNC_RATE_LIMIT": "200"}
    return sim, dataset


def test_a_second_pass_on_one_mirror(
    cli: Cli, sim_factory: Any, database_url: str, backend: str
) -> None:
    sim, dataset = slow_backfill(cli, sim_factory, database_url)
    first = cli.start("backfill")
    try:
        until_sync(lambda: synced_customers(database_url) >= 1, 60, "the first pass to write")
        if backend == "sqlite":
            second = cli("backfill")
            assert second.code == 1, second.both
            said = plain_lines(second.err)
            assert len(said) == 1 and "tanma-sync backfill, pid " in said[0], said
            assert "--wait" in said[0]
            waited = cli("run", "--wait")
            assert "waiting: the mirror is being written by tanma-sync backfill" in waited.err
            (backfill_end,), (run_start,) = query(
                database_url,
                select(SyncRun.finished_at)
                .where(SyncRun.mode == "backfill")
                .union_all(select(SyncRun.started_at).where(SyncRun.mode == "incremental")),
            )
            assert run_start >= backfill_end, "--wait ran beside the first pass"
        else:
            # PostgreSQL: both run, each customer claimed by one of them at a time, and
            # together within the app's rate limit.
            waited = cli("backfill", "--full")
        assert waited.code == 0, waited.both
        no_trace(waited.both)
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    stats = sim.call(lambda: sim.sim.stats.as_dict())
    assert stats["overlaps"] == 0, stats["overlap_customers"]
    assert stats["over_limit"] == 0
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())


def test_a_pass_beside_a_daemon(
    cli: Cli, sim_factory: Any, database_url: str, backend: str, tmp_path: Path
) -> None:
    dataset = SimDataset(seed=54, customers=80, mean_files=12)
    sim = sim_factory(dataset, latency_ms=40, rate_limit=100, rate_burst=10)
    import_dataset(cli, dataset, sim.base_url)
    env = {"SYNC_RATE_LIMIT": "100", "SYNC_PAGE_SIZE": "4", "SYNC_CONCURRENCY": "4"}
    cli.env |= env
    daemon = start_daemon(cli, tmp_path, "d1", **env)
    try:
        until_sync(lambda: synced_customers(database_url) >= 1, 60, "the daemon to sync")
        result = cli("run", **{k: v for k, v in DAEMON_ENV.items() if k == "SYNC_LEASE_TTL"})
        if backend == "sqlite":
            assert result.code == 1, result.both
            said = plain_lines(result.err)
            assert len(said) == 1 and "tanma-sync daemon, pid " in said[0], said
        else:
            assert result.code == 0, result.both
            runs = query(database_url, select(SyncRun.worker_id).distinct())
            assert any(row.worker_id.startswith("incremental@") for row in runs), runs
        no_trace(result.both)
    finally:
        code, _ = stop(daemon, 6)
    assert code == 0, (tmp_path / "d1.log").read_text()[-2000:]
    stats = sim.call(lambda: sim.sim.stats.as_dict())
    assert stats["overlaps"] == 0, stats["overlap_customers"]
    assert stats["over_limit"] == 0


# -- the demo ---------------------------------------------------------------------------------


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*Cli(tmp_path, clean_env()).command("demo"), "--customers", "5", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_leaves_a_database_it_did_not_make_alone_unless_forced(tmp_path: Path) -> None:
    victim = tmp_path / "victim.db"
    with sqlite3.connect(victim) as conn:
        conn.execute("CREATE TABLE precious (x)")
        conn.execute("INSERT INTO precious VALUES (42)")
    refused = demo(tmp_path, "--database", str(victim))
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: {victim} exists and was not made by `tanma-sync demo`, so it is left alone "
        "(choose another --database, or pass --force to replace it)"
    ]
    with sqlite3.connect(victim) as conn:
        assert conn.execute("SELECT x FROM precious").fetchall() == [(42,)]
    (tmp_path / "notes.txt").write_text("not a database at all")
    assert demo(tmp_path, "--database", str(tmp_path / "notes.txt")).returncode == 1
    # Its own database it recreates freely, and another one when forced.
    assert demo(tmp_path, "--database", str(tmp_path / "own.db")).returncode == 0
    assert demo(tmp_path, "--database", str(tmp_path / "own.db")).returncode == 0
    forced = demo(tmp_path, "--database", str(victim), "--force")
    assert forced.returncode == 0, forced.stderr
    with sqlite3.connect(victim) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "precious" not in tables and "customer_files" in tables


# -- customers that never return a file -------------------------------------------------------


def test_customers_whose_first_pass_is_empty_are_counted(
    cli: Cli, sim_factory: Any, database_url: str
) -> None:
    unknown = 3
    dataset = SimDataset(seed=55, customers=10, mean_files=6)
    sim = sim_factory(dataset)
    import_dataset(cli, dataset, sim.base_url)
    import_ids(cli, range(1, 1 + unknown))  # ids the API does not know: empty lists
    empty = unknown + sum(1 for i in range(10) if not dataset.visible_records(i))
    first = cli("backfill")
    assert first.code == 0, first.both
    assert f"; {empty} customers returned no files on their first pass" in first.out
    again = cli("run")
    assert "returned no files on their first pass" not in again.out  # no longer their first
    status = cli("status")
    assert f"{empty} customers have returned no files on any pass" in status.out
