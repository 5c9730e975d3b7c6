"""`tanma-sync customer …` as an operator runs it: show, pause, reset with its confirmation
and audit row, and the JSON round trip from `show --format json` back into `reset`."""

from __future__ import annotations

import asyncio
import json

import pytest

from sync.mirror.database import create_engine
from sync.mirror.fleet import FleetStore
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.cli_support import Cli


def test_show_pause_and_reset_round_trip(cli: Cli, sim_factory) -> None:
    dataset = SimDataset(seed=41, customers=3, mean_files=12)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    path = cli.cwd / "customers.csv"
    path.write_text(dataset.customers_csv(), encoding="utf-8")
    assert cli("customers", "import", str(path)).code == 0
    assert cli("backfill").code == 0
    customer = str(dataset.customer(0).customer_id)

    shown = cli("customer", "show", customer, "--format", "json")
    assert shown.code == 0, shown.both
    snapshot = json.loads(shown.out)
    assert snapshot["customer"]["customer_id"] == int(customer)
    assert snapshot["files"]["live"] == len(dataset.visible_records(0))
    table = cli("customer", "show", customer)
    assert table.code == 0 and "cursor.high_water_id" in table.out

    paused = cli("customer", "pause", customer, "--by", "alice")
    assert paused.code == 0 and "paused" in paused.out
    status = cli("status", "--limit", "0")
    assert "paused" in status.out, status.out
    refused = cli("customer", "sync", customer)
    assert refused.code == 2 and "is paused" in refused.err
    assert cli("customer", "resume", customer).code == 0
    synced = cli("customer", "sync", customer)
    assert synced.code == 0 and "1 customers (1 ok" in synced.out, synced.both

    # Without a terminal and without --yes, nothing is changed.
    unconfirmed = cli("customer", "reset", customer)
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.err
    reset = cli("customer", "reset", customer, "--yes", "--by", "bob")
    assert reset.code == 0, reset.both
    assert str(snapshot["cursor"]["high_water_id"]) in reset.out  # the state before, printed
    assert (
        json.loads(cli("customer", "show", customer, "--format", "json").out)["cursor"][
            "high_water_id"
        ]
        is None
    )

    snapshot_file = cli.cwd / "state.json"
    snapshot_file.write_text(shown.out, encoding="utf-8")
    back = cli("customer", "reset", customer, "--from-json", str(snapshot_file), "--yes")
    assert back.code == 0, back.both
    after = json.loads(cli("customer", "show", customer, "--format", "json").out)
    assert after["cursor"] == snapshot["cursor"]
    assert [a["action"] for a in after["audit"]] == ["reset", "reset", "resume", "pause"]
    assert after["audit"][2:] and after["audit"][-1]["actor"] == "alice"

    other = str(dataset.customer(1).customer_id)
    wrong = cli("customer", "reset", other, "--from-json", str(snapshot_file), "--yes")
    assert wrong.code == 2 and "not this one" in wrong.err, wrong.both
    snapshot_file.write_text("{not json", encoding="utf-8")
    bad = cli("customer", "reset", customer, "--from-json", str(snapshot_file), "--yes")
    assert bad.code == 2 and "not JSON" in bad.err and "Traceback" not in bad.err
    too_high = cli("customer", "reset", customer, "--to", str(10**18), "--yes")
    assert too_high.code == 2 and "above the customer's high-water mark" in too_high.err
    missing = cli("customer", "show", "999999999")
    assert missing.code == 2 and "no such customer" in missing.err


def test_a_held_reconcile_shows_and_is_applied_on_request(cli: Cli, sim_factory) -> None:
    dataset = SimDataset(seed=42, customers=2, mean_files=20)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    path = cli.cwd / "customers.csv"
    path.write_text(dataset.customers_csv(), encoding="utf-8")
    assert cli("customers", "import", str(path)).code == 0
    assert cli("backfill").code == 0
    index = max(range(2), key=lambda i: len(dataset.visible_records(i)))
    customer = str(dataset.customer(index).customer_id)
    records = dataset.visible_records(index)
    for record in records[1:]:
        dataset.delete_record(record["id"])

    full = cli("backfill", "--full")
    assert full.code == 0 and "0 marked deleted" in full.out, full.both
    assert "held" in cli("status", "--limit", "0").out
    held = json.loads(cli("customer", "show", customer, "--format", "json").out)["control"]
    assert held["held"] and f"{len(records) - 1} of {len(records)} files" in held["held_reason"]

    applied = cli("customer", "reconcile", customer, "--allow-mass-delete", "--by", "erin")
    assert applied.code == 0, applied.both
    assert f"{len(records) - 1} marked deleted" in applied.out
    after = json.loads(cli("customer", "show", customer, "--format", "json").out)
    assert not after["control"]["held"] and after["files"]["live"] == 1
    assert after["audit"][0] == {
        **after["audit"][0],
        "action": "reconcile_mass_delete",
        "actor": "erin",
    }


def test_a_reset_on_postgresql_waits_for_the_lease_a_daemon_holds(
    cli: Cli, backend: str, database_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("leases are PostgreSQL's; SQLite has one writer, behind its lock")
    assert cli("customers", "add", "--customer-id", "7001").code == 0

    async def hold() -> int:
        engine = create_engine(database_url)
        try:
            fleet = FleetStore(engine)
            await fleet.ensure_schedule_rows()
            [key] = await MirrorStore(engine).customers.keys(["7001"])
            assert await fleet.claim_chosen("daemon-x", [key.ref], 600)
            return key.ref
        finally:
            await engine.dispose()

    async def let_go(ref: int) -> None:
        engine = create_engine(database_url)
        try:
            await FleetStore(engine).release("daemon-x", [ref])
        finally:
            await engine.dispose()

    ref = asyncio.run(hold())
    process = cli.start("customer", "reset", "7001", "--yes")
    assert process.stderr is not None
    # The reset says it waits (its first line on stderr) and does not go on meanwhile.
    line = process.stderr.readline()
    assert "is being synced by another worker" in line, line
    assert process.poll() is None
    asyncio.run(let_go(ref))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, out + err
    shown = json.loads(cli("customer", "show", "7001", "--format", "json").out)
    assert [a["action"] for a in shown["audit"]] == ["reset"]
