"""Which SQLite files the demo made: ``demo`` recreates its database on every run, and must never
wipe a mirror someone else made. A demo database carries its mark in the SQLite header
(``PRAGMA application_id``), which survives migrations and is read without opening the mirror.
"""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path

# "TmDm": tanma-sync's demo. A mirror made any other way keeps SQLite's default, 0.
DEMO_APPLICATION_ID = 0x546D446D


class FileKind(enum.Enum):
    ABSENT = "absent"  # nothing there, or an empty file: free to create
    DEMO = "demo"  # a database the demo made: free to recreate
    OTHER = "other"  # anything else, a mirror or not: recreated only when forced


def demo_file_kind(path: Path) -> FileKind:
    try:
        if path.stat().st_size == 0:
            return FileKind.ABSENT
    except FileNotFoundError:
        return FileKind.ABSENT
    except OSError:
        return FileKind.OTHER
    try:
        # Read-only and immutable, so looking never creates or changes a file (not even -shm).
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            (application_id,) = conn.execute("PRAGMA application_id").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return FileKind.OTHER  # not a SQLite database (or unreadable): not the demo's
    return FileKind.DEMO if application_id == DEMO_APPLICATION_ID else FileKind.OTHER


def create_demo_database(path: Path) -> None:
    """A new, empty SQLite file with the demo's mark (the demo's migrations fill it)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
        conn.commit()
    finally:
        conn.close()
