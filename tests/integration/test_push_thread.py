"""The push receiver on its own thread (what the daemon runs on PostgreSQL), on both databases:
a push is committed through the thread's own engine and answered, the wake-up reaches the
caller's loop, refusals are tallied across the threads, and a port that is taken fails the
start with no thread left behind."""

from __future__ import annotations

import asyncio
import socket
import threading

import aiohttp
import pytest
from sqlalchemy import select

from sync.daemon.metrics import DaemonMetrics
from sync.daemon.push_thread import PushReceiverThread
from sync.mirror.models import PushInbox
from sync.mirror.store import MirrorStore
from sync.sim.pushes import PushSender
from tests.helpers import APP_ID, APP_KEY, make_settings


def _receiver(database_url: str, on_committed: object) -> PushReceiverThread:
    settings = make_settings("http://127.0.0.1:9", database_url)
    return PushReceiverThread(
        settings,
        DaemonMetrics(dict),
        worker_id="test-worker",
        on_committed=on_committed,  # type: ignore[arg-type]
    )


async def test_a_push_is_committed_and_answered_from_the_receivers_thread(
    store: MirrorStore, database_url: str
) -> None:
    woken: list[int] = []
    receiver = _receiver(database_url, lambda: woken.append(threading.get_ident()))
    await receiver.start("127.0.0.1", 0)
    try:
        sender = PushSender(APP_ID, APP_KEY)
        address = f"http://127.0.0.1:{receiver.port}/tanmarket/push"
        msg_id, noise, wire = sender.build("tag_info", {"customerId": 7})
        _, _, forged = sender.build("tag_info", {"customerId": 7}, bad_sign=True)
        async with aiohttp.ClientSession() as session:
            async with session.post(address, data=wire.body, headers=wire.headers) as answer:
                assert (answer.status, await answer.text()) == (200, str(noise))
            async with session.post(address, data=forged.body, headers=forged.headers) as refused:
                assert refused.status == 401
        for _ in range(100):
            if woken:
                break
            await asyncio.sleep(0.01)
        assert woken == [threading.get_ident()]  # delivered on this loop's thread
        assert receiver.take_rejections().keys() == {"bad_sign"}
        assert receiver.take_rejections() == {}
    finally:
        await receiver.stop()
    async with store.engine.connect() as conn:
        assert (await conn.scalars(select(PushInbox.msg_id))).all() == [msg_id]


async def test_a_taken_port_fails_the_start_and_leaves_no_thread(
    store: MirrorStore, database_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        receiver = _receiver(database_url, lambda: None)
        with pytest.raises(OSError):
            await receiver.start("127.0.0.1", taken.getsockname()[1])
    await receiver.stop()
    assert not [t for t in threading.enumerate() if t.name == "tanma-sync push receiver"]
