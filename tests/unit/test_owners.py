"""When a run left at `running` may be closed as abandoned: only when its owner is provably gone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from sync.mirror.owners import (
    ABANDONED_SUMMARY,
    Owner,
    RunOwnerFacts,
    abandoned_reason,
    current_owner,
    pid_exists,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TTL = 120.0
ME = Owner("host-a", 100, "boot-1/pid:[1]")


def run(**facts: object) -> RunOwnerFacts:
    base: dict[str, object] = {
        "run_id": 1,
        "hostname": "host-a",
        "pid": 200,
        "space": "boot-1/pid:[1]",
        "worker_id": None,
        "heartbeat_at": None,
    }
    return RunOwnerFacts(**(base | facts))


def dead(pid: int) -> bool:
    return False


def alive(pid: int) -> bool:
    return True


def test_a_dead_pid_on_this_host_is_abandoned() -> None:
    reason = abandoned_reason(run(), ME, NOW, TTL, dead)
    assert reason is not None and reason.startswith(ABANDONED_SUMMARY)
    assert "process 200 on host-a" in reason


def test_a_live_pid_on_this_host_is_left_even_with_a_stale_heartbeat() -> None:
    stale = run(worker_id="w", heartbeat_at=NOW - timedelta(hours=1))
    assert abandoned_reason(stale, ME, NOW, TTL, alive) is None


@pytest.mark.parametrize(
    "facts",
    [
        {"hostname": "host-b"},  # another host: its pids mean nothing here
        {"space": "boot-1/pid:[2]"},  # another container with the same host name
        {"space": None},  # recorded where the space could not be read
        {"hostname": None, "pid": None, "space": None},  # a row from before owners were kept
    ],
)
def test_a_cli_run_whose_pid_cannot_be_checked_here_is_left(facts: dict[str, object]) -> None:
    assert abandoned_reason(run(**facts), ME, NOW, TTL, dead) is None


def test_a_daemon_elsewhere_with_a_fresh_heartbeat_is_left() -> None:
    fresh = run(hostname="host-b", worker_id="w", heartbeat_at=NOW - timedelta(seconds=TTL - 1))
    assert abandoned_reason(fresh, ME, NOW, TTL, dead) is None


def test_a_daemon_elsewhere_whose_heartbeat_is_older_than_the_lease_is_abandoned() -> None:
    stale = run(hostname="host-b", worker_id="w", heartbeat_at=NOW - timedelta(seconds=TTL + 1))
    reason = abandoned_reason(stale, ME, NOW, TTL, alive)
    assert reason is not None and "daemon w" in reason and "heartbeat" in reason


def test_a_daemon_elsewhere_that_is_no_longer_registered_is_abandoned() -> None:
    gone = run(hostname="host-b", worker_id="w", heartbeat_at=None)
    reason = abandoned_reason(gone, ME, NOW, TTL, alive)
    assert reason is not None and "no longer registered" in reason


def test_pid_exists_tells_a_live_process_from_a_reaped_one() -> None:
    assert pid_exists(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_exists(child.pid)


def test_the_current_owner_is_this_process() -> None:
    owner = current_owner()
    assert owner.pid == os.getpid() and owner.hostname
    assert owner.space is None or len(owner.space) <= 64
