"""Every database operation of the engine and the CLI, behind one narrow layer: one engine and
a part per job, each in its own module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from sync.config.settings import Settings
from sync.domain.errors import FatalError
from sync.mirror.archive import ArchiveTable
from sync.mirror.console_reads import ConsoleReads
from sync.mirror.controls import CustomerControls
from sync.mirror.customers import CustomerTable
from sync.mirror.database import create_engine, pending_revisions, upgrade
from sync.mirror.dialect import Dialect
from sync.mirror.discovery import DiscoveryStore
from sync.mirror.pages import PageWriter
from sync.mirror.push_inbox import PushInboxStore
from sync.mirror.reads import MirrorReads
from sync.mirror.runs import RunLog


class MirrorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = Dialect(engine)
        self.customers = CustomerTable(engine)
        self.pages = PageWriter(engine, self.dialect)
        self.runs = RunLog(engine, self.dialect)
        self.reads = MirrorReads(engine)
        self.discovery = DiscoveryStore(engine, self.dialect)
        self.archive = ArchiveTable(engine, self.dialect)
        self.console = ConsoleReads(engine, self.dialect)
        self.push = PushInboxStore(engine, self.dialect)
        self.controls = CustomerControls(engine, self.dialect)


@asynccontextmanager
async def open_store(
    settings: Settings, *, migrate: bool = True, read_only: bool = False
) -> AsyncIterator[MirrorStore]:
    """The store over SYNC_DATABASE_URL, migrated first unless ``migrate`` is off. A
    ``read_only`` caller (status, report, customers list) finds a missing SQLite file an
    error instead of creating an empty mirror."""
    engine = create_engine(
        settings.sync_database_url,
        sqlite_busy_timeout=settings.sync_sqlite_busy_timeout,
        must_exist=read_only,
    )
    try:
        if migrate:
            await upgrade(engine)
        elif await pending_revisions(engine):
            raise FatalError("the database schema is not up to date: run `tanma-sync db upgrade`")
        yield MirrorStore(engine)
    finally:
        await engine.dispose()
