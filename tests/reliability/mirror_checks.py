"""What a mirror must look like after a crash, and after a completed run, compared with the
simulator's data. Each check returns a list of problems (empty when all is well), so a test can
record how many rows were lost or duplicated before it asserts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from sync.domain.records import FileRecord, parse_record
from sync.mirror.database import create_engine
from sync.mirror.models import Customer, CustomerFile, CustomerSyncState, SyncRun
from sync.sim import SimDataset, SimThread, is_usable_id
from tests.helpers import DERIVED


@dataclass(frozen=True)
class Snapshot:
    """The mirror's tables as read in one go."""

    files: list[Any]  # customer_files rows
    owner_of: dict[int, int | None]  # customers.id -> upstream customer_id
    states: dict[int | None, Any]  # upstream customer_id -> customer_sync_state row
    runs: list[Any]


@dataclass(frozen=True)
class Upstream:
    """What the simulator serves: usable records by upstream customer id."""

    by_customer: dict[int, dict[int, dict[str, Any]]]

    @property
    def records(self) -> dict[int, dict[str, Any]]:
        return {rid: raw for records in self.by_customer.values() for rid, raw in records.items()}


async def snapshot_of(database_url: str) -> Snapshot:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            files = list((await conn.execute(select(CustomerFile))).all())
            customers = (await conn.execute(select(Customer.id, Customer.customer_id))).all()
            states = (await conn.execute(select(CustomerSyncState))).all()
            runs = list((await conn.execute(select(SyncRun))).all())
    finally:
        await engine.dispose()
    owner_of = {ref: customer_id for ref, customer_id in customers}
    return Snapshot(files, owner_of, {owner_of[s.customer_ref]: s for s in states}, runs)


def read_snapshot(database_url: str) -> Snapshot:
    """``snapshot_of`` for tests that run no event loop of their own."""
    return asyncio.run(snapshot_of(database_url))


def read_upstream(sim: SimThread, dataset: SimDataset) -> Upstream:
    """Read on the simulator's loop, so no request sees the data set half-read."""

    def collect() -> Upstream:
        by_customer = {}
        for customer in dataset.iter_customers():
            records = dataset.visible_records(customer.index)
            by_customer[customer.customer_id] = {
                r["id"]: r for r in records if is_usable_id(r.get("id"))
            }
        return Upstream(by_customer)

    return sim.call(collect)


@dataclass
class Tally:
    """Rows compared, lost, duplicated and wrong (for the figures)."""

    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0


def problems(
    snapshot: Snapshot, upstream: Upstream, lookback_ids: int, *, settled: bool
) -> list[str]:
    """Both checks: after a crash (``settled`` False) or after a completed run (True)."""
    found = row_problems(snapshot, upstream, complete=settled)
    return found + state_problems(snapshot, upstream, lookback_ids, settled=settled)


def row_problems(
    snapshot: Snapshot, upstream: Upstream, *, complete: bool, tally: Tally | None = None
) -> list[str]:
    """Every mirrored row is an upstream record, unchanged, under the right customer, once.

    ``complete`` also requires the converse: every upstream record is mirrored (after a
    completed run). Without it (after a crash) a missing row is allowed here; whether it may be
    missing is ``state_problems``' business.
    """
    tally = tally if tally is not None else Tally()
    problems: list[str] = []
    counts = Counter(row.id for row in snapshot.files)
    duplicated = sorted(rid for rid, n in counts.items() if n > 1)
    tally.duplicated += len(duplicated)
    if duplicated:
        problems.append(f"ids mirrored more than once: {duplicated[:5]}")
    expected = upstream.records
    tally.expected = len(expected)
    owner = {rid: cid for cid, records in upstream.by_customer.items() for rid in records}
    live: set[int] = set()
    for row in snapshot.files:
        raw = expected.get(row.id)
        if raw is None:
            tally.wrong += 1
            problems.append(f"row {row.id} is not an upstream record")
            continue
        if row.deleted_at is not None:
            tally.wrong += 1
            problems.append(f"row {row.id} is marked deleted but is still upstream")
            continue
        live.add(row.id)
        if snapshot.owner_of.get(row.source_customer_id) != owner[row.id]:
            tally.wrong += 1
            problems.append(f"row {row.id} is filed under the wrong customer")
        if row.raw != raw:
            tally.wrong += 1
            problems.append(f"row {row.id}: raw differs from upstream")
            continue
        parsed = parse_record(raw)
        assert isinstance(parsed, FileRecord)
        for column in DERIVED:
            if getattr(row, column) != getattr(parsed, column):
                tally.wrong += 1
                problems.append(f"row {row.id}: column {column} differs from upstream")
    if complete:
        missing = sorted(expected.keys() - live)
        tally.lost += len(missing)
        if missing:
            problems.append(f"{len(missing)} upstream records not mirrored: {missing[:5]}")
    return problems


def state_problems(
    snapshot: Snapshot, upstream: Upstream, lookback_ids: int, *, settled: bool
) -> list[str]:
    """The cursor rows agree with the mirror.

    Always: a customer outside a pass has no pass fields; a pass in progress has a start and a
    cursor no higher than its top; the high-water mark is no higher than the newest upstream
    record, and no upstream record lies unmirrored more than the lookback below it (late
    arrivals land at most a minute below the newest record, so a gap deeper than that is data
    lost). ``settled`` (after a completed run): no pass is open, the mark is the customer's
    newest record, and the last pass succeeded.
    """
    problems: list[str] = []
    mirrored = {row.id for row in snapshot.files if row.deleted_at is None}
    for customer_id, records in upstream.by_customer.items():
        state = snapshot.states.get(customer_id)
        newest = max(records, default=None)
        if state is None:
            if settled:
                problems.append(f"customer {customer_id} has no sync state after a completed run")
            continue
        label = f"customer {customer_id}"
        in_pass = state.pass_started_at is not None
        if not in_pass and (
            state.pass_cursor_id is not None
            or state.pass_top_id is not None
            or state.pass_floor_id is not None
            or state.pass_full
        ):
            problems.append(f"{label}: pass fields set outside a pass")
        if (
            in_pass
            and state.pass_cursor_id is not None
            and state.pass_top_id is not None
            and state.pass_cursor_id > state.pass_top_id
        ):
            problems.append(f"{label}: pass cursor above the pass's top")
        mark = state.high_water_id
        if mark is not None:
            if newest is None or mark > newest:
                problems.append(f"{label}: high-water mark {mark} above every upstream record")
            gap = sorted(
                rid for rid in records if rid <= mark - lookback_ids and rid not in mirrored
            )
            if gap:
                problems.append(
                    f"{label}: {len(gap)} records more than the lookback below the high-water "
                    f"mark are missing: {gap[:3]}"
                )
        if settled:
            if in_pass:
                problems.append(f"{label}: a pass is still open after a completed run")
            if mark != newest:
                problems.append(f"{label}: high-water mark {mark}, newest record {newest}")
            if state.last_error is not None or state.consecutive_failures:
                problems.append(f"{label}: last error {state.last_error!r} after a completed run")
            if state.last_success_at is None:
                problems.append(f"{label}: no success recorded after a completed run")
    return problems
