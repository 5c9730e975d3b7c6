"""SQLite's driver path: a transaction's statements run on the event loop's own thread.

aiosqlite runs the ``sqlite3`` connection on a thread of its own and hands every call there and
back: two thread switches under the GIL and a turn of the event loop each, several per
statement in SQLAlchemy's adapter. Those hand-offs, not SQLite, were most of the daemon's CPU
per synced customer (BENCHMARKS.md, "What a push costs the daemon on SQLite"), and while a
transaction waited for its turns of the loop it held the engine's one connection, so every
other transaction queued behind them.

A statement of this mirror takes tens of microseconds (WAL, ``synchronous=NORMAL``: a commit
does not wait for the disk), less than one hand-off. What can take long is waiting for
another process's write lock, and every transaction takes that lock first (``BEGIN
IMMEDIATE``, database.py). So:

- ``BEGIN`` is held back (``defer_begin``) and tried with the transaction's first statement
  on the loop's thread, without waiting (``busy_timeout`` is 0 there). Once it holds the lock,
  the transaction's statements, its ``COMMIT`` or ``ROLLBACK``, run on the loop's thread too.
- When another process holds the lock, that first statement goes to aiosqlite's thread and
  waits there for up to the busy timeout, as it always did; so do the statements outside any
  transaction (the pragmas at connect).
- The pool's rollback on return, which follows every commit, is skipped when the driver has
  no transaction open (``sqlite3.Connection.in_transaction``, read on the loop's thread).

The cost is that a long statement holds up the loop while it runs: a big report over a large
mirror, run by the console inside the daemon, delays the daemon's other work by its duration.

It is plugged in as the engine's DBAPI ``module`` (``create_async_engine(module=...)``), which
SQLAlchemy supports; the classes it extends are SQLAlchemy's aiosqlite adapter, and the call
it queues is aiosqlite's ``Connection._execute``, the one way to run a function on its thread.
Both libraries are held to a version range in pyproject.toml, and every SQLite test goes
through this path.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)


class _Outcome:
    """A statement's cursor attributes, as SQLAlchemy reads them after ``execute``."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def close(self) -> None:
        """Nothing to release: the driver's cursor is closed when its statement ends."""


def _run(
    conn: sqlite3.Connection,
    begin: str | None,
    operation: str,
    parameters: Any,
    many: bool,
    outcome: _Outcome,
) -> list[Any] | None:
    # The held-back BEGIN if any, then the whole statement, start to end.
    cursor = conn.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        # Read after the fetch: a RETURNING statement counts its rows as they are fetched.
        outcome.description = cursor.description
        outcome.rowcount = cursor.rowcount
        outcome.lastrowid = cursor.lastrowid
        return rows
    finally:
        cursor.close()


def _run_waiting(conn: sqlite3.Connection, wait_ms: int, *args: Any) -> list[Any] | None:
    # On aiosqlite's thread: the same, allowed to wait for another process's lock.
    conn.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
    try:
        return _run(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _is_lock_taken(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Outcome()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._statement(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._statement(operation, seq_of_parameters, many=True)

    async def _statement(self, operation: str, parameters: Any, *, many: bool) -> None:
        driver = cast(aiosqlite.Connection, self._connection)
        adapted = cast(SQLiteConnection, self._adapt_connection)
        outcome = cast(_Outcome, self._cursor)
        args = (operation, parameters, many, outcome)
        async with adapted._execute_mutex:
            begin, adapted._pending_begin = adapted._pending_begin, None
            if begin is None and not driver._conn.in_transaction:
                # Outside any transaction (the pragmas at connect): it may wait for a lock.
                rows = await adapted.run_waiting(begin, *args)
            else:
                try:
                    rows = _run(driver._conn, begin, *args)
                except sqlite3.OperationalError as error:
                    if begin is None or not _is_lock_taken(error):
                        raise
                    rows = await adapted.run_waiting(begin, *args)
        if rows is not None:
            self._rows = collections.deque(rows)


class SQLiteConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_pending_begin", "lock_wait_ms")
    _cursor_cls = _Cursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._pending_begin: str | None = None
        # How long a statement may wait for another process's write lock (database.py sets
        # it from SYNC_SQLITE_BUSY_TIMEOUT when the connection is made).
        self.lock_wait_ms = 0

    def defer_begin(self, statement: str) -> None:
        """Run ``statement`` (a ``BEGIN``) together with the next statement, not on its own."""
        self._pending_begin = statement

    async def run_waiting(self, *args: Any) -> list[Any] | None:
        """``_run`` on aiosqlite's thread, allowed to wait for another process's lock."""
        driver = cast(aiosqlite.Connection, self._connection)
        result: list[Any] | None = await driver._execute(
            _run_waiting, driver._conn, self.lock_wait_ms, *args
        )
        return result

    def commit(self) -> None:
        self._end(sqlite3.Connection.commit)

    def rollback(self) -> None:
        self._end(sqlite3.Connection.rollback)

    def _end(self, how: Any) -> None:
        self._pending_begin = None
        driver = cast(aiosqlite.Connection, self._connection)
        if not driver._conn.in_transaction:
            # No statement ran since a held-back BEGIN, or the driver has no transaction
            # open: nothing to commit or roll back.
            return
        try:
            how(driver._conn)
        except Exception as error:
            self._handle_exception(error)


class SQLiteDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI of SQLAlchemy, with connections whose transactions run on the
    loop's thread."""

    def connect(self, *arg: Any, **kw: Any) -> SQLiteConnection:
        # Statements run on the loop's thread as well as on aiosqlite's, one at a time; none
        # waits for a lock unless _run_waiting allows it.
        kw["check_same_thread"] = False
        kw["timeout"] = 0
        adapted = super().connect(*arg, **kw)
        return SQLiteConnection(self, adapted._connection)


def sqlite_dbapi() -> SQLiteDBAPI:
    return SQLiteDBAPI(aiosqlite, sqlite3)
