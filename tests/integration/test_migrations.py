"""The schema the migrations build is the schema the models describe, on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from sync.mirror import database as db
from sync.mirror.models import Base


async def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        before, after = await db.upgrade(engine)
        assert (before, after) == (None, db.head_revision())
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        assert diff == []
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_downgrade_clears(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        assert await db.upgrade(engine) == (db.head_revision(), db.head_revision())
        assert not await db.pending_revisions(engine)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(db.alembic_config(c), "base"))
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
    finally:
        await engine.dispose()


async def test_a_database_from_a_newer_version_is_refused(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        async with engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff_future'")
        try:
            await db.upgrade(engine)
        except db.FatalError as exc:
            assert "ffff_future" in str(exc) and "newer version" in str(exc)
        else:
            raise AssertionError("an unknown revision must be refused")
    finally:
        await engine.dispose()
