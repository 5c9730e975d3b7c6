"""The push inbox's retention, on both databases: processed rows past the cut-off are deleted in
chunks, pending rows and newer ones stay, and the status counts what is left."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from sync.domain.push import PushMessage, parse_message
from sync.mirror.models import Customer, PushInbox, utc_now
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import StartSim
from tests.integration.test_daemon import SETTLE_S, running_daemon
from tests.integration.test_engine import import_all
from tests.integration.test_push import push_settings, started
from tests.waiting import until

# More than one chunk of the prune (2,000 rows per transaction).
OLD_PROCESSED = 2_345


def _messages(prefix: str, count: int) -> list[PushMessage]:
    return [
        parse_message(
            json.dumps({"msgId": f"{prefix}-{n}", "type": "unheard_of", "noise": n, "content": {}})
        )
        for n in range(count)
    ]


async def test_prune_deletes_old_processed_rows_and_keeps_pending_and_recent(
    store: MirrorStore,
) -> None:
    await store.push.insert(_messages("old", OLD_PROCESSED), "test")
    while await store.push.process_pending(1_000):
        pass
    await store.push.insert(_messages("recent", 3), "test")
    while await store.push.process_pending(1_000):
        pass
    # Old and never processed (a daemon stopped before it got to them): still work to do.
    await store.push.insert(_messages("pending", 2), "test")
    long_ago = utc_now() - timedelta(days=40)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(PushInbox)
            .where(PushInbox.msg_id.like("old-%") | PushInbox.msg_id.like("pending-%"))
            .values(received_at=long_ago)
        )

    deleted = await store.push.prune(utc_now() - timedelta(days=30))

    assert deleted == OLD_PROCESSED
    async with store.engine.connect() as conn:
        left = sorted((await conn.scalars(select(PushInbox.msg_id))).all())
    assert left == ["pending-0", "pending-1", "recent-0", "recent-1", "recent-2"]
    status = await store.push.status()
    assert (status.received, status.processed, status.pending) == (5, 3, 2)
    assert await store.push.prune(utc_now() - timedelta(days=30)) == 0


async def test_the_daemon_prunes_the_inbox_when_its_receiver_starts(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    _dataset, _simulator, url = await started(store, database_url, start_sim)
    await store.push.insert(_messages("old", 3), "test")
    while await store.push.process_pending(100):
        pass
    async with store.engine.begin() as conn:
        await conn.execute(update(PushInbox).values(received_at=utc_now() - timedelta(hours=2)))

    async def inbox_empty() -> bool:
        async with store.engine.connect() as conn:
            return not (await conn.scalars(select(PushInbox.msg_id))).all()

    settings = push_settings(url, database_url, sync_push_retention="1h")
    async with running_daemon(settings, store):
        await until(inbox_empty, SETTLE_S, "the inbox pruned")


async def test_the_gone_types_are_the_ones_given(store: MirrorStore) -> None:
    dataset = SimDataset(seed=9, customers=2, mean_files=1)
    await import_all(store, dataset)
    first, second = (dataset.customer(n).customer_id for n in (0, 1))
    await store.push.insert(
        [
            parse_message(json.dumps({"msgId": "a", "type": "qw_del", "noise": 1,
                                      "content": {"customerId": first}})),
            parse_message(json.dumps({"msgId": "b", "type": "delete_qw_customer", "noise": 2,
                                      "content": {"customerId": second}})),
        ],
        "test",
    )  # fmt: skip
    done = await store.push.process_pending(10, frozenset({"qw_del"}))
    assert [(p.type, p.outcome) for p in done] == [
        ("qw_del", "gone"),
        ("delete_qw_customer", "sync"),
    ]
    async with store.engine.connect() as conn:
        gone = dict((await conn.execute(select(Customer.customer_id, Customer.gone_at))).all())
    assert gone[first] is not None
    assert gone[second] is None
