"""`tanma-sync customers discover` as a user runs it: the summary, the exit statuses, and a
backfill that needs no CSV."""

from __future__ import annotations

from datetime import timedelta

from sync.sim import SimDataset
from tests.cli_support import Cli
from tests.helpers import fetch_mirror_sync


def test_discover_then_backfill_mirrors_everything_without_a_csv(cli: Cli, sim_factory) -> None:
    dataset = SimDataset(seed=31, customers=120, mean_files=4)
    sim = sim_factory(dataset, search_null_external_rate=0.1)
    cli.env["TANMA_BASE_URL"] = sim.base_url

    found = cli("customers", "discover")
    assert found.code == 0, found.both
    assert "120 customers found: 120 new" in found.out
    assert "0 gaps" in found.out

    quiet = cli("customers", "discover")
    assert quiet.code == 0 and "0 new" in quiet.out
    requests = int(quiet.out.split(" requests")[0].rsplit(" ", 1)[-1])
    assert requests <= 2

    backfill = cli("backfill")
    assert backfill.code == 0, backfill.both
    mirrored = {row.id for row in fetch_mirror_sync(cli.env["SYNC_DATABASE_URL"])}
    assert mirrored == set(dataset.expected_mirror())

    listed = cli("customers", "list")
    assert listed.code == 0
    nickname = sim.call(lambda: next(iter(sim.sim.directory.expected_customers().values())))
    assert nickname["wechatNickname"] in listed.out
    report = cli("report", "customers", "--format", "csv")
    assert report.code == 0 and report.out.count("\n") == 121


def test_a_second_with_more_customers_than_the_cap_exits_3_and_names_the_gap(
    cli: Cli, sim_factory
) -> None:
    dataset = SimDataset(seed=32, customers=50, mean_files=0)
    sim = sim_factory(dataset, search_max_results=100)
    sim.call(sim.sim.directory.add_bulk, 130, dataset.now - timedelta(days=2))
    cli.env |= {"TANMA_BASE_URL": sim.base_url, "TANMA_SEARCH_MAX_RESULTS": "100"}
    result = cli("customers", "discover")
    assert result.code == 3, result.both
    assert "1 gaps" in result.out
    assert "130 customers in one second, more than the search cap; 100 fetched" in result.out
    assert "Traceback" not in result.err


def test_bad_credentials_are_one_line_and_exit_1(cli: Cli, sim_factory) -> None:
    sim = sim_factory(SimDataset(seed=33, customers=5, mean_files=0))
    cli.env |= {"TANMA_BASE_URL": sim.base_url, "TANMA_APP_KEY": "wrong-key"}
    result = cli("customers", "discover")
    assert result.code == 1
    assert "code 1002" in result.err and "Traceback" not in result.err
    assert "wrong-key" not in result.both
