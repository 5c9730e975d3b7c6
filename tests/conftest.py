"""Shared fixtures: a fresh, real database per test on SQLite and on PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (override with TANMA_TEST_PG_URL, an admin URL).
Each test session creates uniquely named databases and drops them after. Where no PostgreSQL is
reachable its half is skipped with the reason, unless TANMA_REQUIRE_POSTGRES=1 (set by .ci/run)
turns that skip into a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from sync.cli.logs import configure_logging
from sync.mirror import database as db
from sync.mirror.store import MirrorStore
from sync.sim import SimThread
from tests.cli_support import Cli, cli_for, sim_threads
from tests.s3_server import REQUIRE_S3, S3Server, s3_server

PG_ADMIN_URL = os.environ.get("TANMA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("TANMA_REQUIRE_POSTGRES", "") not in ("", "0", "false")
BACKENDS = ("sqlite", "postgresql")

_session_tag = f"tanma_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_counter = itertools.count(1)
_pg_problem: str | None = None
_pg_checked = False


def _admin_dsn() -> str:
    return str(make_url(PG_ADMIN_URL).set(drivername="postgresql"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (None when it can); checked once per session."""
    global _pg_checked, _pg_problem
    if not _pg_checked:
        _pg_checked = True
        try:
            asyncio.run(_admin("SELECT 1"))
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _pg_problem = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    return _pg_problem


def require_backend(backend: str) -> None:
    if backend != "postgresql":
        return
    problem = _postgres_problem()
    if problem is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"{problem} (TANMA_REQUIRE_POSTGRES is set)")
    pytest.skip(problem)


def new_database_url(backend: str, tmp_path) -> str:
    """A URL to a new, empty database (PostgreSQL ones are dropped by drop_database_url)."""
    require_backend(backend)
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'mirror{next(_counter)}.db'}"
    name = f"{_session_tag}_{next(_counter)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return str(make_url(PG_ADMIN_URL).set(database=name))


def drop_database_url(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """In-process passes log like the CLI does off a terminal, warnings and up."""
    configure_logging("json", "warning")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path) -> Iterator[str]:
    """An empty database (no tables) on each backend."""
    url = new_database_url(backend, tmp_path)
    yield url
    drop_database_url(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MirrorStore]:
    """A migrated database behind the store."""
    engine = db.create_engine(database_url)
    await db.upgrade(engine)
    yield MirrorStore(engine)
    await engine.dispose()


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimThread]]:
    """``start(dataset, **config)`` serves a simulator on loopback until the test ends."""
    with sim_threads() as start:
        yield start


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server on loopback (SeaweedFS), one per test session."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        if isinstance(server, str):
            if REQUIRE_S3:
                pytest.fail(f"{server} (TANMA_REQUIRE_S3 is set)")
            pytest.skip(server)
        yield server


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    """A CLI bound to a fresh database; point it at a simulator with ``cli.env[...] = url``."""
    return cli_for(tmp_path, database_url)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop anything this session left behind (a test killed mid-way, say)."""
    if _pg_checked and _pg_problem is None:

        async def sweep() -> None:
            conn = await asyncpg.connect(_admin_dsn(), timeout=5)
            try:
                names = await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{_session_tag}%"
                )
                for row in names:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(sweep())
