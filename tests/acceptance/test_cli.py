"""Every command through the real CLI, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sync.mirror.database import create_engine
from sync.mirror.models import CustomerSyncState
from sync.sim import SimDataset
from tests.cli_support import Cli, clean_env, run_and_kill
from tests.helpers import APP_KEY, assert_mirror_equals, dump_database_sync, fetch_mirror_sync
from tests.waiting import until_sync

SUMMARY = re.compile(r"(\d+) requests")


def synced_customers(database_url: str) -> int:
    """How many customers a CLI subprocess has synced so far."""

    async def read() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return int(
                    await conn.scalar(
                        select(func.count()).where(CustomerSyncState.last_success_at.is_not(None))
                    )
                    or 0
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def no_trace(text: str) -> None:
    assert "Traceback" not in text, text
    assert APP_KEY not in text, "the app key leaked"


def test_the_whole_workflow(cli: Cli, sim_factory, database_url: str, tmp_path: Path) -> None:
    dataset = SimDataset(seed=21, customers=25, mean_files=20)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    csv_path = tmp_path / "customers.csv"
    csv_path.write_text(dataset.customers_csv(), encoding="utf-8")

    upgraded = cli("db", "upgrade")
    assert upgraded.code == 0 and "upgraded" in upgraded.out
    assert "up to date" in cli("db", "upgrade").out

    first = cli("customers", "import", str(csv_path))
    assert first.code == 0 and first.out.startswith("25 added"), first.both
    again = cli("customers", "import", str(csv_path))
    assert again.code == 0 and "0 added, 0 updated, 25 unchanged" in again.out
    listed = cli("customers", "list", "--format", "table")
    assert listed.code == 0 and "25 customers" in listed.out

    backfill = cli("backfill")
    assert backfill.code == 0, backfill.both
    assert "25 ok, 0 failed" in backfill.out
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())

    quiet = cli("run")
    assert quiet.code == 0, quiet.both
    assert SUMMARY.search(quiet.out).group(1) == "25"  # one request per unchanged customer

    chosen = next(i for i in range(25) if dataset.visible_records(i))
    sim.call(dataset.delete_record, dataset.visible_records(chosen)[0]["id"])
    some = str(dataset.customer(chosen).customer_id)
    full = cli("backfill", "--full", "--customer", some)
    assert full.code == 0 and "1 customers" in full.out, full.both
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())

    status = cli("status")
    assert status.code == 0 and "25 ok" in status.out and "recent runs" in status.out
    for result in (upgraded, first, listed, backfill, quiet, full, status):
        no_trace(result.both)
    # stderr carries structured log lines only
    for line in filter(None, backfill.err.splitlines()):
        assert "event" in json.loads(line)


def test_customers_by_jsonl_and_add(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"customer_id": 1, "user_id": "u"}\n{"external_user_id": "wm-x"}\n', "utf-8")
    assert cli("customers", "import", str(path)).out.startswith("2 added")
    added = cli("customers", "add", "--customer-id", "3", "--sales-id", "44")
    assert added.code == 0 and added.out.strip() == "added"
    assert cli("customers", "add").code == 2
    assert "3 customers" in cli("customers", "list", "--format", "table").out


def test_a_bad_customers_file_names_the_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "customer_id,user_id,external_user_id,sales_id\n1,a,,\nabc,b,,\n,only-user,,\n4,d,,\n",
        "utf-8",
    )
    result = cli("customers", "import", str(path))
    assert result.code == 3
    assert "line 3" in result.err and "customer_id" in result.err and "line 4" in result.err
    assert result.out.startswith("2 added")
    path.write_text("usr_id,sales\n1,a\n", "utf-8")
    unknown = cli("customers", "import", str(path))
    assert (
        unknown.code == 1 and "usr_id" in unknown.err and len(unknown.err.strip().splitlines()) == 1
    )
    missing = cli("customers", "import", str(tmp_path / "nope.csv"))
    assert missing.code == 1 and "nope.csv" in missing.err
    for r in (result, unknown, missing):
        no_trace(r.both)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SYNC_PAGE_SIZE": "many"}, "SYNC_PAGE_SIZE"),
        ({"SYNC_LOOKBACK": "a while"}, "SYNC_LOOKBACK"),
        ({"SYNC_RATE_LIMIT": "-1"}, "SYNC_RATE_LIMIT"),
        ({"TANMA_BASE_URL": "account.tanmarket.cn"}, "TANMA_BASE_URL"),
        ({"SYNC_DATABASE_URL": "mysql://x/y"}, "SYNC_DATABASE_URL"),
        ({"TANMA_APP_ID": ""}, "TANMA_APP_ID"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(cli: Cli, env: dict[str, str], named: str) -> None:
    result = cli("run", **env)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.err
    no_trace(result.both)


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("backfill", "--fast").code == 2
    assert cli("no-such-command").code == 2
    assert cli("--help").code == 0


def test_wrong_key_is_fatal_and_never_printed(cli: Cli, sim_factory) -> None:
    dataset = SimDataset(seed=22, customers=3)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    cli("customers", "add", "--customer-id", str(dataset.customer(0).customer_id))
    result = cli("backfill", TANMA_APP_KEY="wrong-key-wrong-key")
    assert result.code == 1 and "1002" in result.err and "TANMA_APP_KEY" in result.err
    assert "wrong-key-wrong-key" not in result.both
    no_trace(result.both)


def test_partial_runs_exit_3_and_unknown_customers_are_named(
    cli: Cli, sim_factory, tmp_path: Path
) -> None:
    dataset = SimDataset(seed=23, customers=10, mean_files=20, poison_rate=0.1)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    (tmp_path / "c.csv").write_text(dataset.customers_csv(), "utf-8")
    cli("customers", "import", str(tmp_path / "c.csv"))
    result = cli("backfill")
    assert result.code == 3, result.both
    assert "rejected" in result.out
    unknown = cli("run", "--customer", "999")
    assert unknown.code == 2 and "no such customer: 999" in unknown.err


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path, env=clean_env())
    result = cli("demo", "--customers", "60", timeout=300)
    assert result.code == 0, result.both
    assert "matches" in result.out and "records/s" in result.out
    assert (tmp_path / "tanma_demo.db").exists()
    no_trace(result.both)
    status = cli("status", SYNC_DATABASE_URL="sqlite:///tanma_demo.db")
    assert status.code == 0 and "60 customers" in status.out


def test_sim_command_serves_until_interrupted(tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path, env=clean_env())
    process = cli.start("sim", "--port", "0", "--customers", "5", "--fault", "code1000=0.25")
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        with urllib.request.urlopen(url + "/_sim/customers.csv", timeout=10) as response:
            assert response.read().decode().startswith("customer_id,")
        with urllib.request.urlopen(url + "/_sim/config", timeout=10) as response:
            assert json.loads(response.read())["fault_code1000"] == 0.25
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert "Traceback" not in process.stderr.read()


def test_the_app_key_is_in_no_log_and_no_row(cli: Cli, sim_factory, database_url: str) -> None:
    dataset = SimDataset(seed=24, customers=4, mean_files=10)
    sim = sim_factory(dataset, fault_http500=0.2, fault_seed=1)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    cli("customers", "add", "--customer-id", str(dataset.customer(1).customer_id))
    result = cli("backfill", SYNC_LOG_LEVEL="debug", TANMA_SEND_APP_KEY_HEADER="true")
    assert result.code == 0, result.both
    no_trace(result.both)
    no_trace(cli("status").both)
    dump = dump_database_sync(database_url)
    assert "customer_files" in dump and "sync_runs" in dump  # the scan did see the data
    assert APP_KEY not in dump


def test_killing_a_backfill_at_random_instants_loses_nothing(
    cli: Cli, sim_factory, database_url: str, tmp_path: Path
) -> None:
    """The crash invariant: kill the process at seeded random instants, then finish."""
    import random

    dataset = SimDataset(seed=25, customers=40, mean_files=40)
    # The latency sets how long a pass lasts, however fast the machine and the code: about 260
    # pages, four at a time, at least 25 ms each, so a whole pass takes over 1.6 s and every
    # kill below lands inside one unless it is the end of a resumed pass.
    sim = sim_factory(dataset, latency_ms=25)
    cli.env |= {
        "TANMA_BASE_URL": sim.base_url,
        "SYNC_PAGE_SIZE": "7",
        "SYNC_CONCURRENCY": "4",
        "SYNC_LOG_LEVEL": "info",  # run_and_kill times the kill from `pass_started`
    }
    (tmp_path / "c.csv").write_text(dataset.customers_csv(), "utf-8")
    assert cli("customers", "import", str(tmp_path / "c.csv")).code == 0
    rng = random.Random(1234)
    kills = 0
    for _ in range(6):
        kills += run_and_kill(
            cli, ("backfill",), rng.uniform(0.0, 1.2), from_event="pass_started"
        ).landed
        sim.call(dataset.advance, new_rate=0.2, late_rate=0.1, delete_rate=0, update_rate=0)
    assert kills >= 3, "the process finished before it could be killed: make the data set larger"
    final = cli("run")
    assert final.code == 0, final.both
    rows = fetch_mirror_sync(database_url)
    assert len(rows) == len({r.id for r in rows})
    assert_mirror_equals(rows, dataset.expected_mirror())


def test_ctrl_c_mid_backfill_exits_130_and_the_next_run_finishes(
    cli: Cli, sim_factory, database_url: str, tmp_path: Path
) -> None:
    dataset = SimDataset(seed=26, customers=120, mean_files=30)
    sim = sim_factory(dataset, latency_ms=15)
    # About 500 pages, two at a time: several seconds of work, interrupted after two.
    cli.env |= {"TANMA_BASE_URL": sim.base_url, "SYNC_PAGE_SIZE": "5", "SYNC_CONCURRENCY": "2"}
    (tmp_path / "c.csv").write_text(dataset.customers_csv(), "utf-8")
    cli("customers", "import", str(tmp_path / "c.csv"))
    process = cli.start("backfill")
    # Interrupt mid-pass, with some customers written, however long start-up takes on a loaded
    # machine.
    first = process.stderr.readline()
    assert json.loads(first)["event"] == "pass_started", first
    until_sync(lambda: synced_customers(database_url) >= 2, 60, "two customers to be synced")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    err = first + err
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    no_trace(out + err)
    assert "interrupted" in cli("status").out
    assert cli("run").code == 0
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())


def test_contradicting_identities_are_named_and_the_rest_imports(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("customer_id,external_user_id\n1,wm-a\n2,wm-b\n", "utf-8")
    assert cli("customers", "import", str(path)).code == 0
    path.write_text("customer_id,external_user_id\n1,wm-b\n3,wm-c\n", "utf-8")
    result = cli("customers", "import", str(path))
    assert result.code == 3 and result.out.startswith("1 added")
    assert "line 2: external_user_id wm-b belongs to customer_id 2" in result.err
    clash = cli("customers", "add", "--customer-id", "9", "--external-user-id", "wm-a")
    assert clash.code == 3 and "not added" in clash.err and "wm-a" in clash.err
    no_trace(result.both + clash.both)
