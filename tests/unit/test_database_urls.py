"""Turning the database URLs people write into async engine URLs (no database touched)."""

from __future__ import annotations

import pytest

from sync.domain.errors import ConfigError
from sync.mirror.database import async_url, sqlite_path


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/mirror", "postgresql+asyncpg://u:***@db:5432/mirror"),
        ("postgresql://u@db/mirror", "postgresql+asyncpg://u@db/mirror"),
        ("postgres+asyncpg://u@db/mirror", "postgresql+asyncpg://u@db/mirror"),
        ("postgres://u@db/m?sslmode=require", "postgresql+asyncpg://u@db/m?ssl=require"),
        ("sqlite:///tanma_mirror.db", "sqlite+aiosqlite:///tanma_mirror.db"),
        ("sqlite:////var/lib/m.db", "sqlite+aiosqlite:////var/lib/m.db"),
    ],
)
def test_plain_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert str(async_url(given)) == expected


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("sqlite:///", "names no file"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
        ("postgres+psycopg2://u@db/m", "driver 'psycopg2' is not async"),
        ("mysql://u@db/m", "'mysql' is not supported"),
        ("not a url", "is not a database URL"),
    ],
)
def test_unusable_urls_are_one_config_error(given: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        async_url(given)
    assert str(caught.value).startswith("setting SYNC_DATABASE_URL: ")
    assert named in str(caught.value)


def test_the_sqlite_file_of_a_url() -> None:
    assert str(sqlite_path(async_url("sqlite:////var/lib/m.db"))) == "/var/lib/m.db"
    assert sqlite_path(async_url("postgres://u@db/m")) is None
