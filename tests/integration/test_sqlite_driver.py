"""SQLite's driver path (sync/mirror/sqlite_driver.py): what SQLAlchemy reads from a cursor
after a statement (rows, row counts, the last row id) is what the driver reported, the driver's
errors arrive as SQLAlchemy's, a transaction runs on the loop's thread, and waiting for another
process's lock happens on aiosqlite's. SQLite only: PostgreSQL's driver runs on the event loop
anyway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.mirror.database import create_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'driver.sqlite'}", sqlite_busy_timeout=0.2)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


async def test_rows_counts_and_row_ids_are_the_drivers(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert inserted.lastrowid == 1 and inserted.rowcount == 1
        many = await conn.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": n} for n in "bcd"]
        )
        assert many.rowcount == 3
        returned = await conn.execute(
            text("UPDATE t SET name = name || '!' WHERE id > 1 RETURNING id, name")
        )
        assert sorted(returned.all()) == [(2, "b!"), (3, "c!"), (4, "d!")]
        assert returned.rowcount == 3
        selected = await conn.execute(text("SELECT id, name FROM t WHERE id <= :n"), {"n": 2})
        assert list(selected.keys()) == ["id", "name"]
        assert selected.all() == [(1, "a"), (2, "b!")]
        empty = await conn.execute(text("SELECT id FROM t WHERE id > 99"))
        assert empty.first() is None
        deleted = await conn.execute(text("DELETE FROM t WHERE id = 4"))
        assert deleted.rowcount == 1


async def test_driver_errors_arrive_as_sqlalchemys(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
    with pytest.raises(OperationalError, match="no such table"):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    # The connection is fine after both.
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM t")) == 1


async def test_another_writer_holding_the_lock_is_a_locked_error(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with aiosqlite.connect(tmp_path / "driver.sqlite", isolation_level=None) as other:
        await other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (name) VALUES ('z')"))
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT count(*) FROM t"))
        await other.execute("ROLLBACK")
    # The failed BEGINs left no transaction behind: the next one writes, and only its row is in.
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('y')"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT name FROM t"))).all() == [("y",)]


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions handed to aiosqlite's thread from now on, by name."""
    calls: list[str] = []
    queue = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await queue(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


async def test_no_statement_of_a_transaction_leaves_the_loops_thread(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the connection is made and set up now
    calls: list[str] = request.getfixturevalue("thread_calls")
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert await conn.scalar(text("SELECT count(*) FROM t")) == 1
    async with engine.begin():
        pass
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT name FROM t")) == "a"
    assert calls == []


async def test_a_lock_held_elsewhere_is_waited_for_off_the_loop(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "waits.sqlite"
    engine = create_engine(f"sqlite:///{path}", sqlite_busy_timeout=10.0)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"))
        calls: list[str] = request.getfixturevalue("thread_calls")
        async with aiosqlite.connect(path, isolation_level=None) as other:
            await other.execute("BEGIN IMMEDIATE")

            async def write() -> None:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO t (name) VALUES ('waited')"))

            writer = asyncio.create_task(write())
            await asyncio.sleep(0.2)
            assert not writer.done()
            # The lock's holder commits from this same loop: that can only happen while the
            # writer waits off the loop, and the writer's statement lands after it.
            await other.execute("COMMIT")
            await asyncio.wait_for(writer, 10)
        assert "_run_waiting" in calls
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT name FROM t")) == "waited"
    finally:
        await engine.dispose()


async def test_each_connection_gets_the_mirrors_pragmas(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        found = {
            name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "wal_autocheckpoint")
        }
    # synchronous 1 is NORMAL; the checkpoint interval is the tool's, not SQLite's 1,000.
    assert found == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "wal_autocheckpoint": 10_000,
    }
