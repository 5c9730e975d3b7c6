"""Which database errors the engine retries in place: a lost connection yes, anything the
statement itself caused (or SQLite's lock, already waited out) no."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from sync.mirror.database import describe_db_error, is_transient_db_error


class _PostgresError(Exception):
    """Stands in for the asyncpg adapter's errors, which carry the server's SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(error: Exception, *, invalidated: bool = False) -> DBAPIError:
    return OperationalError("UPDATE t SET x = 1", None, error, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        ConnectionResetError(104, "Connection reset by peer"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed"),
        _wrapped(Exception("connection was closed in the middle of operation"), invalidated=True),
        _wrapped(_PostgresError("terminating connection due to administrator command", "57P01")),
        _wrapped(_PostgresError("the database system is starting up", "57P03")),
        _wrapped(_PostgresError("connection does not exist", "08003")),
    ],
    ids=["refused", "reset", "multiple", "invalidated", "admin-shutdown", "starting-up", "08"],
)
def test_a_lost_or_refused_connection_is_transient(error: BaseException) -> None:
    assert is_transient_db_error(error)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(sqlite3.OperationalError("database is locked")),
        IntegrityError("INSERT", None, _PostgresError("duplicate key", "23505")),
        ProgrammingError("SELECT", None, _PostgresError("invalid byte sequence", "22021")),
        PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
        SQLAlchemyError("anything else"),
        ValueError("not a database error at all"),
    ],
    ids=["sqlite-locked", "constraint", "bad-data", "pool-timeout", "other", "not-db"],
)
def test_what_the_statement_caused_is_not_transient(error: BaseException) -> None:
    assert not is_transient_db_error(error)


def test_a_lost_connection_is_described_as_such() -> None:
    error = _wrapped(Exception("cannot switch to state 12"), invalidated=True)
    assert describe_db_error(error) == "connection lost: cannot switch to state 12"
