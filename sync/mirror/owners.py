"""Who runs a pass, and when a run left at ``running`` can be called abandoned.

A process killed with SIGKILL cannot record how its run ended. The next run closes such rows,
but only when the owner is provably gone: a process we can look up on this very host, or a
daemon whose heartbeats stopped for longer than a lease lasts. A run whose owner might still be
working (another host, no heartbeats to go by) is left alone; a wrong ``abandoned`` would be
worse than a stale ``running``.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ABANDONED_SUMMARY = "the process ended without finishing the pass"


@dataclass(frozen=True, slots=True)
class Owner:
    """A process as another process can recognise it later.

    ``space`` tells pid namespaces (and boots) apart: two containers sharing a host name each
    number their processes from 1, so a pid only means something inside the same space.
    """

    hostname: str
    pid: int
    space: str | None


@dataclass(frozen=True, slots=True)
class RunOwnerFacts:
    """What the database knows about a run still marked ``running`` and its owner."""

    run_id: int
    hostname: str | None
    pid: int | None
    space: str | None
    worker_id: str | None
    # The daemon's row in sync_workers; None when there is none (or the run is not a daemon's).
    heartbeat_at: datetime | None


def _process_space() -> str | None:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text("ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}"[:64]


def current_owner() -> Owner:
    # Keyed by pid: a forked child must not pass for its parent.
    return _owner_for(os.getpid())


@functools.cache
def _owner_for(pid: int) -> Owner:
    return Owner(socket.gethostname()[:255], pid, _process_space())


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Someone else's process: it exists.
        return True
    return True


def is_local(run: RunOwnerFacts, me: Owner) -> bool:
    """Whether the run's process was in this host's and this process's pid space, so that
    whether it still exists can be looked up here."""
    return run.pid is not None and run.hostname == me.hostname and run.space == me.space


def abandoned_reason(
    run: RunOwnerFacts,
    me: Owner,
    now: datetime,
    lease_ttl: float,
    alive: Callable[[int], bool] = pid_exists,
) -> str | None:
    """Why ``run`` can be closed as abandoned, or None when its owner may still be at work.

    ``alive`` answers whether a pid exists here (injected so the decision can be tested).
    """
    if is_local(run, me):
        assert run.pid is not None
        if alive(run.pid):
            # A process we can see is never declared dead, whatever its heartbeat says.
            return None
        return f"{ABANDONED_SUMMARY} (process {run.pid} on {run.hostname} no longer exists)"
    if run.worker_id is None:
        return None
    if run.heartbeat_at is None:
        return f"{ABANDONED_SUMMARY} (daemon {run.worker_id} is no longer registered)"
    if run.heartbeat_at < now - timedelta(seconds=lease_ttl):
        return (
            f"{ABANDONED_SUMMARY} (daemon {run.worker_id} sent no heartbeat for longer "
            f"than the lease time, {lease_ttl:g} s)"
        )
    return None
