"""A command-line pass: the selected customers, synced once with a progress display, and a
one-line description of how it went (``backfill``, ``run`` and the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

from sync.api.client import TanmaClient
from sync.cli.progress import PassProgress
from sync.config.settings import Settings
from sync.domain.customers import CustomerKey, unknown_selectors
from sync.domain.errors import UsageError
from sync.domain.exits import ExitCode
from sync.domain.pager import PassMode
from sync.engine.passes import RunReport, SyncEngine
from sync.mirror.store import MirrorStore


async def sync_pass(
    settings: Settings,
    store: MirrorStore,
    mode: PassMode,
    selectors: list[str] | None = None,
    *,
    allow_mass_delete: bool = False,
) -> RunReport:
    """One pass over the selected customers (all when none are named); ``allow_mass_delete``
    lets a reconcile's deletions past the guard (`customer reconcile --allow-mass-delete`)."""
    settings.require_credentials()
    customers = await store.customers.keys(selectors or [])
    _check_selectors(selectors or [], customers)
    # A paused customer (`customer pause`) is skipped by every pass until it is resumed.
    paused = await store.controls.paused_refs()
    if paused:
        customers = [c for c in customers if c.ref not in paused]
    async with TanmaClient(settings) as client:
        with PassProgress(mode.value, lambda: client.requests) as progress:
            engine = SyncEngine(
                settings, store, client, progress, allow_mass_delete=allow_mass_delete
            )
            if store.engine.dialect.name != "postgresql":
                # SQLite: the writer lock (sync/mirror/writer_lock.py) keeps this pass alone.
                return await engine.run_pass(mode, customers)
            return await _pass_beside_daemons(settings, store, client, engine, mode, customers)


async def _pass_beside_daemons(
    settings: Settings,
    store: MirrorStore,
    client: TanmaClient,
    engine: SyncEngine,
    mode: PassMode,
    customers: list[CustomerKey],
) -> RunReport:
    """On PostgreSQL a pass takes part in the daemons' leases and rate share: each customer is
    claimed before it is synced (so no daemon works it meanwhile) and this process counts as
    one more live worker when SYNC_RATE_LIMIT is split."""
    # Loaded only here: the lease machinery brings APScheduler's triggers with it, which a
    # pass on SQLite never needs.
    from sync.daemon.lease_feed import ChosenLeaseFeed, lease_terms
    from sync.daemon.membership import fleet_membership, pass_worker_id
    from sync.mirror.fleet import FleetStore

    fleet = FleetStore(store.engine)
    worker_id = pass_worker_id(mode.value)
    terms = lease_terms(worker_id, settings.sync_lease_ttl, settings.sync_concurrency)
    await fleet.ensure_schedule_rows()
    feed = ChosenLeaseFeed(fleet, terms, customers, mode, clock=asyncio.get_running_loop().time)
    membership = fleet_membership(settings, fleet, client, worker_id, renewed=feed.renewed)
    return await engine.run_pass(
        mode, feed, worker_id=worker_id, known_total=len(customers), membership=membership
    )


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the running task: SIGTERM cancels it as asyncio's Ctrl-C does, so the page in
    flight commits or rolls back whole and the run is recorded ``interrupted`` with its counts;
    leaving the block raises KeyboardInterrupt then (exit 130, one line). A second SIGTERM
    exits at once (130); the database rolls back whatever transaction was open."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "stop_on_sigterm runs inside a task"
    signalled = False

    def on_sigterm() -> None:
        nonlocal signalled
        if signalled:
            os._exit(ExitCode.INTERRUPTED)
        signalled = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    except asyncio.CancelledError:
        if not signalled:
            raise
        raise KeyboardInterrupt from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _check_selectors(selectors: list[str], found: list[CustomerKey]) -> None:
    missing = unknown_selectors(selectors, found)
    if missing:
        raise UsageError(no_such_customer(missing))


def no_such_customer(missing: list[str]) -> str:
    return f"no such customer: {', '.join(missing)} (see `tanma-sync customers list`)"


def describe_report(report: RunReport) -> str:
    t = report.totals
    seen = t.records_inserted + t.records_updated + t.records_unchanged
    rate = seen / report.seconds if report.seconds > 0 else 0.0
    empty = (
        f"; {report.customers_empty} customers returned no files on their first pass "
        "(unknown ids answer so too)"
        if report.customers_empty
        else ""
    )
    return (
        f"{report.mode.value} run #{report.run_id}: {report.customers} customers "
        f"({t.customers_ok} ok, {t.customers_failed} failed); records: {t.records_inserted} new, "
        f"{t.records_updated} updated, {t.records_unchanged} unchanged, {t.records_rejected} "
        f"rejected, {t.records_deleted} marked deleted; {t.requests} requests ({t.retries} "
        f"retries) in {report.seconds:.2f}s = {rate:,.0f} records/s{empty}"
    )
