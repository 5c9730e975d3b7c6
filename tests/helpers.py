"""Test helpers shared by the integration and acceptance suites."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from sync.config.settings import Settings, load_settings
from sync.domain.records import FileRecord, parse_record
from sync.mirror.database import create_engine
from sync.mirror.models import CustomerFile

APP_ID, APP_KEY = "test-app", "test-key-s3cr3t-0123456789"

# Columns that must equal what the parser derives from the upstream record.
DERIVED = tuple(name for name in FileRecord._fields if name not in ("id", "raw"))


def make_settings(base_url: str, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tanma_base_url": base_url,
        "tanma_app_id": APP_ID,
        "tanma_app_key": APP_KEY,
        "sync_database_url": database_url,
        "sync_rate_limit": 2000,
        "sync_concurrency": 4,
        "sync_backoff_base": 0.01,
        "sync_backoff_max": 0.05,
        "tanma_request_timeout": 5,
        "sync_log_format": "json",
        "sync_log_level": "warning",
        # Daemon tests name their customers; the discovery tests switch discovery on.
        "sync_discovery_schedule": "off",
        "sync_discovery_full_schedule": "off",
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def mirror_rows(rows: list[Any]) -> dict[int, Any]:
    return {row.id: row for row in rows}


def assert_mirror_equals(rows: list[Any], expected: dict[int, dict[str, Any]]) -> None:
    """Live mirror rows (deleted_at NULL) hold exactly the expected records, every column."""
    live = mirror_rows([r for r in rows if r.deleted_at is None])
    missing = sorted(expected.keys() - live.keys())
    extra = sorted(live.keys() - expected.keys())
    assert not missing and not extra, f"missing {missing[:10]}, extra {extra[:10]}"
    for record_id, raw in expected.items():
        row = live[record_id]
        assert row.raw == raw, f"raw of {record_id} differs"
        parsed = parse_record(raw)
        assert isinstance(parsed, FileRecord)
        for column in DERIVED:
            assert getattr(row, column) == getattr(parsed, column), f"{column} of {record_id}"


async def fetch_mirror(engine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(CustomerFile))).all())


def fetch_mirror_sync(database_url: str) -> list[Any]:
    """For subprocess tests: read the mirror with a short-lived engine."""

    async def read() -> list[Any]:
        engine = create_engine(database_url)
        try:
            return await fetch_mirror(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def dump_database_sync(database_url: str) -> str:
    """Every row of every table as text, for scanning what the database holds."""
    from sqlalchemy import MetaData

    async def read() -> str:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                meta = MetaData()
                await conn.run_sync(meta.reflect)
                lines = []
                for table in meta.sorted_tables:
                    for row in await conn.execute(select(table)):
                        lines.append(f"{table.name}: {tuple(row)!r}")
                return "\n".join(lines)
        finally:
            await engine.dispose()

    return asyncio.run(read())


# The integration tests' `start_sim` fixture: start(dataset, **SimConfig fields) gives the
# running simulator and its base URL.
StartSim = Callable[..., Any]
