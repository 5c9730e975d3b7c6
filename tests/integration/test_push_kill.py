"""A daemon SIGKILLed after answering a push and before processing it: the push is in the inbox,
and the restarted daemon processes it and mirrors the customer's new file (both databases)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from sqlalchemy import func, select

from sync.mirror.models import CustomerFile, PushInbox
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.cli_support import clean_env
from tests.helpers import APP_ID, APP_KEY, StartSim
from tests.integration.test_daemon import everyone_synced
from tests.integration.test_engine import import_all
from tests.waiting import until

SETTLE_S = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_daemon(env: dict[str, str], log: Path, **extra: str) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sync", "daemon", env={**env, **extra}, stdout=out, stderr=out
        )


async def pushed_state(store: MirrorStore) -> tuple[int, int]:
    """(inbox rows, processed ones)."""
    async with store.engine.connect() as conn:
        total = await conn.scalar(select(func.count()).select_from(PushInbox))
        done = await conn.scalar(select(func.count()).where(PushInbox.processed_at.is_not(None)))
    return int(total or 0), int(done or 0)


async def test_a_push_answered_then_killed_is_processed_after_restart(
    store: MirrorStore, database_url: str, start_sim: StartSim, tmp_path: Path
) -> None:
    dataset = SimDataset(seed=9, customers=3, mean_files=2)
    simulator, url = await start_sim(dataset)
    await import_all(store, dataset)
    port = free_port()
    env = clean_env() | {
        "TANMA_APP_ID": APP_ID,
        "TANMA_APP_KEY": APP_KEY,
        "TANMA_BASE_URL": url,
        "SYNC_DATABASE_URL": database_url,
        "SYNC_LOG_FORMAT": "json",
        "SYNC_RATE_LIMIT": "2000",
        "SYNC_DISCOVERY_SCHEDULE": "off",
        "SYNC_DISCOVERY_FULL_SCHEDULE": "off",
        "SYNC_SCHEDULE": "1h",
        "SYNC_POLL_MAX_INTERVAL": "2h",
        "SYNC_MAX_STALENESS": "3h",
        "SYNC_FULL_SCHEDULE": "off",
        "SYNC_HTTP_LISTEN": "off",
        "SYNC_PUSH_LISTEN": f"127.0.0.1:{port}",
        "SYNC_PUSH_COALESCE": "0.2s",
        "SYNC_WORKER_ID": "killed",
    }
    log = tmp_path / "daemon.log"
    # Processing waits an hour after each commit: the answer goes out, the effect does not.
    first = await start_daemon(env, log, SYNC_PUSH_PROCESS_DELAY="1h")
    simulator.pushes.register(f"http://127.0.0.1:{port}/tanmarket/push", "")
    # The start-up sweep syncs everyone; the file comes after it, so only the push can bring it.
    await until(lambda: everyone_synced(store, 3), SETTLE_S, "the start-up sweep")
    record = dataset.add_record(1)

    async def answered() -> bool:
        sent = await simulator.push(
            "tag_info", {"customerId": dataset.customer(1).customer_id}, msg_id="kill-1"
        )
        return sent.status == 200 and sent.answer == str(sent.noise)

    await until(answered, SETTLE_S, "the daemon to answer the push")
    os.kill(first.pid, signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    assert await pushed_state(store) == (1, 0)

    second = await start_daemon(env | {"SYNC_WORKER_ID": "restarted"}, log)
    try:

        async def mirrored() -> bool:
            async with store.engine.connect() as conn:
                found = await conn.scalar(
                    select(func.count()).where(CustomerFile.id == record["id"])
                )
            return bool(found) and await pushed_state(store) == (1, 1)

        await until(mirrored, SETTLE_S, "the restarted daemon to process the push")
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0, log.read_text()[-2000:]
