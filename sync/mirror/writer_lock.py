"""One writer per SQLite mirror: a daemon, a ``backfill`` or a ``run`` holds the mirror's writer
lock for as long as it runs, and a second one is told who holds it.

SQLite itself would let two passes interleave their transactions, each spending the whole app's
rate limit; the lease machinery that lets writers share work needs PostgreSQL, where this lock
is not taken. The lock is the kernel's (``flock`` on a file beside the database), so a process
killed with SIGKILL does not leave it behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from sync.domain.errors import ConfigError

# How often a writer told to wait tries the lock again.
_WAIT_POLL_S = 0.5


class MirrorBusy(ConfigError):
    """Another process writes to this SQLite mirror (and we were not told to wait)."""


def sqlite_lock_path(database_url: str) -> Path | None:
    """The lock file of a SQLite mirror, or None for PostgreSQL and in-memory databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).resolve()
    return path.with_name(path.name + ".writer.lock")


@contextlib.asynccontextmanager
async def sqlite_writer_lock(
    database_url: str,
    role: str,
    *,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
    advice: str = "wait for it to end, or pass --wait",
) -> AsyncIterator[None]:
    """Hold the mirror's writer lock while the body runs (nothing on PostgreSQL). ``role`` says
    what this process is (``daemon``, ``backfill``, …) to whoever finds the lock taken. Without
    ``wait`` a taken lock raises MirrorBusy at once; with it, ``on_wait`` is told the holder once
    and the lock is tried again until it is free (cancellable)."""
    lock_path = sqlite_lock_path(database_url)
    if lock_path is None:
        yield
        return
    try:
        # Held for the body's life; a small local file opens at once, no thread needed.
        handle: IO[str] = open(lock_path, "a+")  # noqa: SIM115, ASYNC230
    except OSError as exc:
        raise ConfigError(f"cannot open the writer lock {lock_path}: {exc.strerror}") from None
    try:
        told = False
        while not _try_lock(handle):
            holder = _holder(handle)
            if not wait:
                database = lock_path.with_name(lock_path.name.removesuffix(".writer.lock"))
                raise MirrorBusy(
                    f"{database} is being written by another tanma-sync process ({holder}); "
                    f"SQLite has one writer: {advice}"
                )
            if not told and on_wait is not None:
                on_wait(holder)
                told = True
            await asyncio.sleep(_WAIT_POLL_S)
        handle.seek(0)
        handle.truncate()
        handle.write(f"tanma-sync {role}, pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    return handle.read().strip() or "a process that has not said who it is"
