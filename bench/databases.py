"""Fresh, empty mirror databases for one measurement: a SQLite file or a PostgreSQL database."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("TANMA_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")

_tag = f"tanma_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_counter = itertools.count(1)


def _admin_dsn() -> str:
    return str(make_url(PG_ADMIN_URL).set(drivername="postgresql"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_admin_dsn(), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    return None


def postgres_version() -> str:
    async def ask() -> str:
        conn = await asyncpg.connect(_admin_dsn(), timeout=10)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(ask())


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """Yields the plain URL of a new, empty database; removes it afterwards."""
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="tanma_bench_"))
        try:
            yield f"sqlite:///{folder / 'mirror.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"{_tag}_{next(_counter)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield str(make_url(PG_ADMIN_URL).set(database=name))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database, url
    return database


def asyncpg_dsn(url: str) -> str:
    return str(make_url(url).set(drivername="postgresql"))
