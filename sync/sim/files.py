"""The files behind simulated records: what each record's URL serves, deterministically.

With ``FileShapes`` given to the data set, every record's ``fileContent`` points at the
simulator itself (``/_files/<record id>/<size>/<store path>``) with a size drawn into a small
range, and a share of records is shaped to test an archiver: files that 404 (until
``SimConfig.serve_missing_files``), slow ones, oversized ones, HTML error pages served as 200,
byte-identical duplicates, and records whose URL names a host outside the allow-list
(``localhost`` rather than the simulator's ``127.0.0.1``: the simulator counts any hit on it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from random import Random

from sync.sim.content import FILE_HOST

# The hosts file URLs are written with in the data set; the server puts its own address in
# their place as it serves a page.
FILE_PLACEHOLDER = FILE_HOST + "/"
OUTSIDE_PLACEHOLDER = "https://outside.example.invalid/"
FILE_ROUTE = "/_files/"
OUTSIDE_HOST = "localhost"
CHUNK = 64 * 1024
DUPLICATE_BYTES = 4096
ERROR_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>\n"
_PATH = re.compile(r"^/_files/(\d+)/(\d+)/")


@dataclass(frozen=True, slots=True)
class FileShapes:
    """Shares of records per kind (the rest are plain files) and the sizes they get."""

    min_bytes: int = 100
    max_bytes: int = 64 * 1024
    oversized_bytes: int = 4 * 1024 * 1024
    missing: float = 0.0
    slow: float = 0.0
    oversized: float = 0.0
    outside: float = 0.0
    html: float = 0.0
    duplicate: float = 0.0
    seed: int = 0

    def kind(self, record_id: int) -> str:
        digest = hashlib.sha256(f"{self.seed}:{record_id}".encode()).digest()
        roll = int.from_bytes(digest[:8], "big") / 2**64
        shares = (
            ("missing", self.missing),
            ("slow", self.slow),
            ("oversized", self.oversized),
            ("outside", self.outside),
            ("html", self.html),
            ("duplicate", self.duplicate),
        )
        for name, share in shares:
            if roll < share:
                return name
            roll -= share
        return "ok"

    def size(self, record_id: int, drawn: int) -> int:
        kind = self.kind(record_id)
        if kind == "oversized":
            return self.oversized_bytes
        if kind == "duplicate":
            return DUPLICATE_BYTES
        if kind == "html":
            return len(ERROR_PAGE)  # the length agrees: only the body gives the page away
        return self.min_bytes + drawn % (self.max_bytes - self.min_bytes + 1)

    def url(self, record_id: int, size: int, store_path: str) -> str:
        host = OUTSIDE_PLACEHOLDER if self.kind(record_id) == "outside" else FILE_PLACEHOLDER
        return f"{host}{record_id}/{size}/{store_path}"


def parse_file_path(path: str) -> tuple[int, int] | None:
    """``(record id, size)`` from a served file's path (or its full URL's path)."""
    match = _PATH.match(path)
    return (int(match.group(1)), int(match.group(2))) if match else None


def file_chunks(record_id: int, size: int, *, duplicate: bool = False) -> Iterator[bytes]:
    """The file's bytes, in chunks: a pure function of the record id and the size."""
    rng = Random("duplicate" if duplicate else f"file:{record_id}")
    left = size
    while left > 0:
        step = min(CHUNK, left)
        yield rng.randbytes(step)
        left -= step


def file_sha256(shapes: FileShapes, record_id: int, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in file_chunks(record_id, size, duplicate=shapes.kind(record_id) == "duplicate"):
        digest.update(chunk)
    return digest.hexdigest()
