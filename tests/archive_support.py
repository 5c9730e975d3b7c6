"""Shared by the archive's tests: a data set whose records point at files the simulator
serves, a CLI set up to archive them, and what the archive should end up holding."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sync.sim import SimDataset
from sync.sim.files import FileShapes, file_sha256, parse_file_path
from tests.cli_support import Cli
from tests.helpers import fetch_mirror_sync

SHAPES = FileShapes(
    min_bytes=200,
    max_bytes=60_000,
    oversized_bytes=400_000,
    missing=0.08,
    slow=0.08,
    oversized=0.06,
    outside=0.08,
    html=0.05,
    duplicate=0.1,
    seed=5,
)
MAX_BYTES = 200_000
# What each kind of file ends as after one archive run (missing ones until they are served).
FAILED_AS = {
    "missing": "not_found",
    "oversized": "too_large",
    "outside": "refused_host",
    "html": "error_page",
}


def archive_dataset(customers: int = 6, mean_files: float = 10) -> SimDataset:
    return SimDataset(seed=11, customers=customers, mean_files=mean_files, files=SHAPES)


def prepare(cli: Cli, sim: Any, tmp_path: Path, archive_url: str, **env: str) -> None:
    """Point the CLI at the simulator and the archive, import the customers and backfill."""
    cli.env.update(
        {
            "TANMA_BASE_URL": sim.base_url,
            "SYNC_ARCHIVE_URL": archive_url,
            "SYNC_ARCHIVE_HOSTS": "127.0.0.1",
            "SYNC_ARCHIVE_MAX_BYTES": str(MAX_BYTES),
            "SYNC_ARCHIVE_RATE_LIMIT": "2000",
            "SYNC_ARCHIVE_CONCURRENCY": "4",
            "SYNC_ARCHIVE_BACKOFF_BASE": "0.01",
            "SYNC_ARCHIVE_BACKOFF_MAX": "0.05",
            "SYNC_ARCHIVE_TIMEOUT": "10",
            **env,
        }
    )
    csv_path = tmp_path / "customers.csv"
    csv_path.write_text(sim.sim.dataset.customers_csv(), encoding="utf-8")
    assert cli("customers", "import", str(csv_path)).code == 0
    done = cli("backfill")
    assert done.code == 0, done.both


@dataclass(frozen=True)
class Expected:
    kind: str
    sha256: str


def expected_files(database_url: str, shapes: FileShapes = SHAPES) -> dict[int, Expected]:
    """Per mirrored record: its kind and the SHA-256 of the bytes the simulator serves."""
    return expected_of(fetch_mirror_sync(database_url), shapes)


def expected_of(rows: Iterable[Any], shapes: FileShapes = SHAPES) -> dict[int, Expected]:
    found = {}
    for row in rows:
        parsed = parse_file_path(urlsplit(row.file_url).path)
        assert parsed is not None, row.file_url
        record_id, size = parsed
        found[row.id] = Expected(shapes.kind(record_id), file_sha256(shapes, record_id, size))
    return found


def mirror_state(database_url: str) -> dict[int, Any]:
    return {row.id: row for row in fetch_mirror_sync(database_url)}


def check_layout(keys: Iterable[str], read: Any) -> set[str]:
    """Every object under sha256/ sits at sha256/<2 hex>/<64 hex> and hashes to its name;
    returns the digests."""
    digests = set()
    for key in keys:
        root, two, name = key.split("/")
        assert root == "sha256" and two == name[:2] and len(name) == 64, key
        assert hashlib.sha256(read(key)).hexdigest() == name, f"{key} does not hash to its name"
        digests.add(name)
    return digests
