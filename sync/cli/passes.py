"""A command-line pass: the selected customers, synced once with a progress display, and a
one-line description of how it went (``backfill``, ``run`` and the demo)."""

from __future__ import annotations

from sync.api.client import TanmaClient
from sync.cli.progress import PassProgress
from sync.config.settings import Settings
from sync.domain.customers import CustomerKey, unknown_selectors
from sync.domain.errors import UsageError
from sync.domain.pager import PassMode
from sync.engine.passes import RunReport, SyncEngine
from sync.mirror.store import MirrorStore


async def sync_pass(
    settings: Settings, store: MirrorStore, mode: PassMode, selectors: list[str] | None = None
) -> RunReport:
    """One pass over the selected customers (all when none are named)."""
    settings.require_credentials()
    customers = await store.customers.keys(selectors or [])
    _check_selectors(selectors or [], customers)
    async with TanmaClient(settings) as client:
        with PassProgress(mode.value, lambda: client.requests) as progress:
            return await SyncEngine(settings, store, client, progress).run_pass(mode, customers)


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
    return (
        f"{report.mode.value} run #{report.run_id}: {report.customers} customers "
        f"({t.customers_ok} ok, {t.customers_failed} failed); records: {t.records_inserted} new, "
        f"{t.records_updated} updated, {t.records_unchanged} unchanged, {t.records_rejected} "
        f"rejected, {t.records_deleted} marked deleted; {t.requests} requests ({t.retries} "
        f"retries) in {report.seconds:.2f}s = {rate:,.0f} records/s"
    )
