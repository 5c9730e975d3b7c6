"""Crash consistency: SIGKILL a real `tanma-sync backfill` / `run` / `backfill --full` process at
seeded random instants, over and over, while new and out-of-order records arrive between runs.

After every kill the mirror must hold only true upstream records, once each, and no gap deeper
than the lookback below any customer's high-water mark. After one final, uninterrupted `run`
the mirror must equal the simulator's data exactly, every customer's state must be settled, and
no run may be left `running` (the killed ones are closed as `abandoned`).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from sync.config.settings import load_settings
from sync.sim import SimDataset
from tests.cli_support import Cli, run_and_kill
from tests.reliability.conftest import SEED, Scale
from tests.reliability.figures import Figures
from tests.reliability.mirror_checks import (
    Tally,
    problems,
    read_snapshot,
    read_upstream,
    row_problems,
    state_problems,
)

COMMANDS = (("backfill",), ("run",), ("backfill", "--full"))
COMMAND_WEIGHTS = (4, 4, 2)
# Most kills land inside the pass (the part with state to lose); the rest anywhere from the
# process's start, which also hits start-up, migrations and the customer query.
SHARE_FROM_PASS = 0.8
LOOKBACK = "10m"


def test_sigkill_at_random_instants_loses_and_duplicates_nothing(
    cli: Cli,
    sim_factory,
    database_url: str,
    tmp_path: Path,
    scale: Scale,
    rng: random.Random,
    figures: Figures,
    case_name: str,
) -> None:
    dataset = SimDataset(seed=rng.randrange(10**6), customers=scale.kill_customers, mean_files=30)
    sim = sim_factory(dataset, latency_ms=2)
    # Small pages and a modest pace keep every pass busy for a second or more, so a kill at a
    # random instant mostly finds work in flight.
    cli.env |= {
        "TANMA_BASE_URL": sim.base_url,
        "SYNC_PAGE_SIZE": "7",
        "SYNC_CONCURRENCY": "4",
        "SYNC_RATE_LIMIT": "60",
        "SYNC_LOOKBACK": LOOKBACK,
        "SYNC_LOG_LEVEL": "info",
    }
    lookback_ids = load_settings(_env_file=None, sync_lookback=LOOKBACK).lookback_ids
    (tmp_path / "customers.csv").write_text(dataset.customers_csv(), "utf-8")
    imported = cli("customers", "import", str(tmp_path / "customers.csv"))
    assert imported.code == 0, imported.both

    plan = f"seed {SEED}, case {case_name}"
    landed = cycles = in_pass = 0
    commands: Counter[str] = Counter()
    while landed < scale.kills_per_backend and cycles < 3 * scale.kills_per_backend:
        cycles += 1
        args = rng.choices(COMMANDS, COMMAND_WEIGHTS)[0]
        from_pass = rng.random() < SHARE_FROM_PASS
        delay = rng.uniform(0.0, 1.0) if from_pass else rng.uniform(0.2, 1.6)
        kill = run_and_kill(cli, args, delay, from_event="pass_started" if from_pass else None)
        if kill.landed:
            landed += 1
            in_pass += kill.in_pass
            commands[" ".join(args)] += 1
        else:
            # It finished first: then it must have finished cleanly.
            assert kill.code == 0, f"{plan}: {' '.join(args)} exited {kill.code}: {kill.err}"
        assert "Traceback" not in kill.err, f"{plan}: {kill.err}"

        found = problems(
            read_snapshot(database_url), read_upstream(sim, dataset), lookback_ids, settled=False
        )
        assert not found, f"{plan}, after kill {landed} ({' '.join(args)}): {found[:5]}"
        # New records above every id, and late ones up to a minute below the newest.
        sim.call(dataset.advance, new_rate=0.3, late_rate=0.2, delete_rate=0, update_rate=0)

    final = cli("run")
    snapshot = read_snapshot(database_url)
    upstream = read_upstream(sim, dataset)
    tally = Tally()
    found = row_problems(snapshot, upstream, complete=True, tally=tally)
    found += state_problems(snapshot, upstream, lookback_ids, settled=True)
    figures.add(
        case_name,
        kills_landed=landed,
        kills_mid_pass=in_pass,
        kill_cycles=cycles,
        kill_rows_checked=tally.expected,
        rows_lost=tally.lost,
        rows_duplicated=tally.duplicated,
        rows_wrong=tally.wrong,
        runs_left_running=sum(r.status == "running" for r in snapshot.runs),
        runs_abandoned=sum(r.status == "abandoned" for r in snapshot.runs),
    )
    figures.add_kinds("kills_by_command", case_name, dict(commands))
    figures.note(case_name, seed=SEED)

    assert landed >= scale.kills_per_backend, (
        f"{plan}: only {landed} of {cycles} processes were still running when killed"
    )
    assert final.code == 0, f"{plan}: final run: {final.both}"
    assert not found, f"{plan}: {found[:8]}"
    assert tally.expected > 0
    last = max(snapshot.runs, key=lambda r: r.id)
    assert last.status == "ok" and last.customers_failed == 0
    # Every killed process's run was closed by a later one (regression: they stayed `running`).
    left = [r.id for r in snapshot.runs if r.status == "running" or r.finished_at is None]
    assert not left, f"{plan}: runs left running after the final run: {left}"
    assert all(
        r.error_summary and "ended without finishing" in r.error_summary
        for r in snapshot.runs
        if r.status == "abandoned"
    )
