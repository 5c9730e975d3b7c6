"""The pieces every entry point shares (CLI commands, the demo, later the daemon): opening the
store with migrations applied, running one pass with progress, and describing its outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sync import db
from sync.client import TanmaClient
from sync.engine import RunReport, SyncEngine
from sync.errors import ConfigError, FatalError
from sync.pager import PassMode
from sync.progress import PassProgress
from sync.settings import Settings
from sync.store import CustomerKey, MirrorStore


@asynccontextmanager
async def open_store(settings: Settings, *, migrate: bool = True) -> AsyncIterator[MirrorStore]:
    engine = db.create_engine(
        settings.sync_database_url, sqlite_busy_timeout=settings.sync_sqlite_busy_timeout
    )
    try:
        if migrate:
            await db.upgrade(engine)
        elif await db.pending_revisions(engine):
            raise FatalError("the database schema is not up to date: run `tanma-sync db upgrade`")
        yield MirrorStore(engine)
    finally:
        await engine.dispose()


async def sync_pass(
    settings: Settings, store: MirrorStore, mode: PassMode, selectors: list[str] | None = None
) -> RunReport:
    """One pass over the selected customers (all when none are named)."""
    settings.require_credentials()
    customers = await store.customers(selectors or [])
    _check_selectors(selectors or [], customers)
    async with TanmaClient(settings) as client:
        with PassProgress(mode.value, lambda: client.requests) as progress:
            return await SyncEngine(settings, store, client, progress).run_pass(mode, customers)


def _check_selectors(selectors: list[str], found: list[CustomerKey]) -> None:
    known = {str(c.customer_id) for c in found} | {c.external_user_id for c in found}
    missing = [s for s in selectors if s not in known]
    if missing:
        raise ConfigError(
            f"no such customer: {', '.join(missing)} (see `tanma-sync customers list`)"
        )


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
