"""SQLite's driver path with one thread hop per statement.

aiosqlite runs the ``sqlite3`` connection on a thread of its own, and SQLAlchemy's adapter
makes a hop to that thread and back for each step of a statement: make a cursor, execute,
fetch the rows, close the cursor. Each hop is two thread switches under the GIL and a turn of
the event loop, and they, not SQLite, were most of the daemon's CPU per synced customer
(BENCHMARKS.md, "What a push costs the daemon on SQLite"). The cursor here does all four
steps in one call on aiosqlite's thread and keeps what SQLAlchemy reads afterwards
(``description``, ``rowcount``, ``lastrowid`` and the rows).

A transaction costs no hop of its own either. ``BEGIN`` is held back (``defer_begin``) and
run in the same call as the transaction's first statement, and the connection remembers
whether the driver had a transaction open after its last call, so the pool's rollback on
return, which follows every commit, is skipped when there is nothing to roll back.

It is plugged in as the engine's DBAPI ``module`` (``create_async_engine(module=...)``), which
SQLAlchemy supports; the classes it extends are SQLAlchemy's aiosqlite adapter, and the call
it queues is aiosqlite's ``Connection._execute``, the one way to run a function on its thread.
Both libraries are held to a version range in pyproject.toml, and every SQLite test goes
through this path.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)


class _Outcome:
    """A statement's cursor attributes, as SQLAlchemy reads them after ``execute``."""

    __slots__ = ("arraysize", "description", "in_transaction", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1
        # Whether the driver's connection had a transaction open when the call ended.
        self.in_transaction = False

    def close(self) -> None:
        """Nothing to release: the driver's cursor is closed on its thread."""


def _run(
    conn: sqlite3.Connection,
    begin: str | None,
    operation: str,
    parameters: Any,
    many: bool,
    outcome: _Outcome,
) -> list[Any] | None:
    # On aiosqlite's thread: the held-back BEGIN if any, then the whole statement.
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
        outcome.in_transaction = conn.in_transaction
        cursor.close()


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Outcome()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._one_call(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._one_call(operation, seq_of_parameters, many=True)

    async def _one_call(self, operation: str, parameters: Any, *, many: bool) -> None:
        driver = cast(aiosqlite.Connection, self._connection)
        adapted = cast(OneHopConnection, self._adapt_connection)
        outcome = cast(_Outcome, self._cursor)
        async with adapted._execute_mutex:
            begin, adapted._pending_begin = adapted._pending_begin, None
            try:
                rows: Sequence[Any] | None = await driver._execute(
                    _run, driver._conn, begin, operation, parameters, many, outcome
                )
            finally:
                adapted._in_transaction = outcome.in_transaction
        if rows is not None:
            self._rows = collections.deque(rows)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_in_transaction", "_pending_begin")
    _cursor_cls = _OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._pending_begin: str | None = None
        self._in_transaction = False

    def defer_begin(self, statement: str) -> None:
        """Run ``statement`` (a ``BEGIN``) together with the next statement, not on its own."""
        self._pending_begin = statement

    def commit(self) -> None:
        if self._settled():
            return
        super().commit()
        self._in_transaction = False

    def rollback(self) -> None:
        if self._settled():
            return
        super().rollback()
        self._in_transaction = False

    def _settled(self) -> bool:
        """Whether there is nothing to commit or roll back: no statement ran since a held-back
        BEGIN, or the driver had no transaction open after its last call."""
        held_back, self._pending_begin = self._pending_begin is not None, None
        return held_back or not self._in_transaction


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI of SQLAlchemy, with connections whose cursors make one hop."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


def one_hop_dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)
