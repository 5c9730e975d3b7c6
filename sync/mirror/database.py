"""Engines and migrations. Users write plain ``sqlite:///…`` or ``postgresql://…`` URLs; the
async driver is picked here. Schema changes happen only through the Alembic scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sync
from sync.domain.errors import ConfigError, FatalError
from sync.mirror.sqlite_driver import SQLiteConnection, sqlite_dbapi

_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_BACKEND_ALIASES = {"postgres": "postgresql"}
# Any constant works; it only has to be the same for every tanma-sync process.
_MIGRATION_LOCK_KEY = 0x7A4D_5359


# A checkpoint (which fsyncs, on the loop's thread) after every 10,000 WAL pages (about 40 MB
# on disk), not SQLite's default of 1,000: a third less time in COMMIT during a backfill's
# writes (BENCHMARKS.md, "Measured experiments").
_WAL_AUTOCHECKPOINT_PAGES = 10_000


def async_url(url: str) -> URL:
    """The SQLAlchemy URL with the async driver for a plain database URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"setting SYNC_DATABASE_URL: {url!r} is not a database URL") from None
    # Read from the URL's own text: asking SQLAlchemy for the driver loads the dialect, and
    # there is no dialect called "postgres" (the short form Heroku and libpq users write).
    name, _, driver = parsed.drivername.partition("+")
    backend = _BACKEND_ALIASES.get(name, name)
    if backend not in _ASYNC_DRIVERS:
        raise ConfigError(
            f"setting SYNC_DATABASE_URL: {name!r} is not supported "
            "(use sqlite:///path.db or postgresql://user@host/db)"
        )
    wanted = _ASYNC_DRIVERS[backend]
    if driver and driver != wanted:
        raise ConfigError(
            f"setting SYNC_DATABASE_URL: driver {driver!r} is not async; "
            f"write {backend}:// (tanma-sync uses {wanted})"
        )
    parsed = parsed.set(drivername=f"{backend}+{wanted}")
    if backend == "sqlite" and (parsed.database or "").strip() in ("", ":memory:"):
        # An in-memory database would be gone when the command ends.
        raise ConfigError(
            "setting SYNC_DATABASE_URL: the SQLite URL names no file "
            "(write sqlite:///tanma_mirror.db, or sqlite:////absolute/path.db)"
        )
    if backend == "postgresql" and "sslmode" in parsed.query:
        # libpq spells it sslmode; asyncpg takes the same values as ssl.
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file an async SQLite URL names (None for PostgreSQL)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).expanduser()


def create_engine(
    url: str, *, sqlite_busy_timeout: float = 30.0, must_exist: bool = False
) -> AsyncEngine:
    """An engine for ``url``; ``sqlite_busy_timeout`` is how long a SQLite write waits for
    another process's lock before failing with "database is locked". With ``must_exist`` (the
    read-only commands) a SQLite file that is not there yet is an error, and nothing is
    created; otherwise its directory is made."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        path = sqlite_path(target)
        if path is not None:
            _check_sqlite_path(path, must_exist=must_exist)
        return _sqlite_engine(target, round(sqlite_busy_timeout * 1000))
    return create_async_engine(target, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _check_sqlite_path(path: Path, *, must_exist: bool) -> None:
    if path.is_dir():
        raise ConfigError(f"setting SYNC_DATABASE_URL: {path} is a directory, not a SQLite file")
    if must_exist:
        if not path.is_file():
            raise FatalError(
                f"there is no mirror at {path.resolve()} yet (check SYNC_DATABASE_URL, or create "
                "it with "
                "`tanma-sync customers import PATH`)"
            )
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"setting SYNC_DATABASE_URL: cannot create the directory {path.parent} "
            f"for the SQLite file ({exc.strerror})"
        ) from None


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> AsyncEngine:
    # One connection: SQLite has a single writer anyway, and queueing in the pool is cheaper and
    # clearer than lock retries between our own connections.
    engine = create_async_engine(
        url, module=sqlite_dbapi(), pool_size=1, max_overflow=0, pool_timeout=600
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: SQLiteConnection, _record: Any) -> None:
        # Another process writing: a statement waits this long for its lock (the driver path
        # sets SQLite's busy_timeout around the statements that may wait, sqlite_driver.py).
        dbapi_connection.lock_wait_ms = busy_timeout_ms
        # Take transaction control from the driver so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",  # analysts can read while a sync writes
            "PRAGMA synchronous=NORMAL",  # durable across process crashes in WAL mode
            "PRAGMA foreign_keys=ON",
            f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES}",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two processes queue on busy_timeout
        # instead of deadlocking when a read transaction tries to upgrade. It runs with the
        # transaction's first statement (sqlite_driver.py).
        driver = cast(SQLiteConnection, connection.connection.dbapi_connection)
        driver.defer_begin("BEGIN IMMEDIATE")

    return engine


def migrations_dir() -> Path:
    """The Alembic scripts: inside the package when installed, at the top of a source tree."""
    package = Path(sync.__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FatalError(f"the migration scripts are missing (looked in {package})")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (revision before, revision after)."""
    before = await _checked_revision(engine)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes starting at once must not both create the tables.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(
                lambda sync_conn: command.upgrade(alembic_config(sync_conn), revision)
            )
    except CommandError as exc:
        raise FatalError(f"database migration failed: {exc}") from None
    except SQLAlchemyError as exc:
        raise FatalError(f"database migration failed: {describe_db_error(exc)}") from None
    return before, await current_revision(engine)


async def _checked_revision(engine: AsyncEngine) -> str | None:
    try:
        current = await current_revision(engine)
    except SQLAlchemyError as exc:
        raise FatalError(f"cannot open the database: {describe_db_error(exc)}") from None
    except OSError as exc:
        raise FatalError(f"cannot open the database: {exc}") from None
    if current is not None and not _known_revision(current):
        raise FatalError(
            f"the database is at schema revision {current}, which this version of tanma-sync "
            "does not know: it was migrated by a newer version"
        )
    return current


def _known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


async def pending_revisions(engine: AsyncEngine) -> bool:
    return await _checked_revision(engine) != head_revision()


# What a failing database can raise mid-pass. asyncpg raises OSError itself, not wrapped by
# SQLAlchemy, when it cannot connect (the server down or unreachable).
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, OSError)


def describe_db_error(exc: BaseException) -> str:
    """One line about a database error, without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None) or exc
    first = (
        str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    )
    if isinstance(exc, OSError):
        first = f"cannot connect: {first}"
    elif getattr(exc, "connection_invalidated", False):
        # The driver's own words can be cryptic ("cannot switch to state 12 …") once the
        # server has dropped the connection; say what happened first.
        first = f"connection lost: {first}"
    return first[:300]


# PostgreSQL's words for a server going away or not back yet (a restart, pg_terminate_backend):
# class 08 is "connection exception"; admin_shutdown, crash_shutdown, cannot_connect_now.
_SERVER_GONE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def is_transient_db_error(exc: BaseException) -> bool:
    """Whether the same work may well succeed a moment later: the connection was lost or could
    not be made. Not for anything the statement itself caused (bad data, a constraint), nor for
    SQLite's "database is locked", which the busy timeout has already waited out."""
    if isinstance(exc, OSError):  # asyncpg's own, when it cannot reach the server
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate.startswith("08") or sqlstate in _SERVER_GONE_SQLSTATES
    )
