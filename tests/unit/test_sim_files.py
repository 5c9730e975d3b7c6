"""The simulator's served files: deterministic bytes and kinds, sizes that match the record."""

from __future__ import annotations

import hashlib
from collections import Counter

from sync.sim.files import FileShapes, file_chunks, file_sha256, parse_file_path

SHAPES = FileShapes(missing=0.1, slow=0.1, oversized=0.1, outside=0.1, html=0.1, duplicate=0.1)


def test_kinds_are_a_pure_function_of_the_record_with_the_asked_shares() -> None:
    kinds = Counter(SHAPES.kind(record_id) for record_id in range(20_000))
    assert kinds == Counter(SHAPES.kind(record_id) for record_id in range(20_000))
    for kind in ("missing", "slow", "oversized", "outside", "html", "duplicate"):
        assert 1_600 < kinds[kind] < 2_400, (kind, kinds[kind])
    assert 7_000 < kinds["ok"] < 9_000


def test_bytes_are_deterministic_and_of_the_recorded_size() -> None:
    first = b"".join(file_chunks(42, 200_001))
    assert len(first) == 200_001 and first == b"".join(file_chunks(42, 200_001))
    assert first != b"".join(file_chunks(43, 200_001))
    assert b"".join(file_chunks(1, 4096, duplicate=True)) == b"".join(
        file_chunks(2, 4096, duplicate=True)
    )
    plain = FileShapes()
    assert file_sha256(plain, 42, 200_001) == hashlib.sha256(first).hexdigest()


def test_urls_carry_the_record_and_the_size() -> None:
    url = FileShapes().url(7, 1234, "group1/M00/AB/CD/x.pdf")
    assert url.startswith("https://files.example.invalid/")
    assert parse_file_path("/_files/7/1234/group1/M00/AB/CD/x.pdf") == (7, 1234)
    assert parse_file_path("/elsewhere") is None
    assert FileShapes(outside=1.0).url(7, 1, "p").startswith("https://outside.example.invalid/")
