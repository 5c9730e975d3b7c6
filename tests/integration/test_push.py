"""The push receiver through a real daemon and real sockets, on both databases: a push makes its
customer's new files mirrored while polling is an hour away; bad pushes are refused with their
status and change nothing; a duplicate has one effect; a new customer is added and synced."""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from sync.daemon.daemon import Daemon
from sync.domain.push import PUSH_VERSION, encrypt_body, push_sign
from sync.mirror.models import Customer, CustomerFile, CustomerSchedule, PushInbox
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY, StartSim
from tests.integration.test_daemon import SETTLE_S, daemon_settings, everyone_synced, running_daemon
from tests.integration.test_engine import import_all
from tests.waiting import until

CUSTOMERS = 4


def push_settings(url: str, database_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        # Polling is an hour away: whatever is mirrored within the test came by push.
        "sync_schedule": "1h",
        "sync_poll_max_interval": "2h",
        "sync_max_staleness": "3h",
        "sync_push_listen": "127.0.0.1:0",
        "sync_push_coalesce": "0.2s",
    }
    values.update(overrides)
    return daemon_settings(url, database_url, **values)


def push_address(daemon: Daemon) -> str:
    assert daemon.push_receiver is not None
    return f"http://127.0.0.1:{daemon.push_receiver.port}{daemon.settings.sync_push_path}"


async def file_mirrored(store: MirrorStore, record_id: int) -> bool:
    async with store.engine.connect() as conn:
        return bool(await conn.scalar(select(func.count()).where(CustomerFile.id == record_id)))


async def inbox_rows(store: MirrorStore) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(PushInbox))).all())


async def schedule_rows(store: MirrorStore) -> list[Any]:
    async with store.engine.connect() as conn:
        return sorted((await conn.execute(select(CustomerSchedule))).all())


async def started(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> tuple[SimDataset, Simulator, str]:
    dataset = SimDataset(seed=5, customers=CUSTOMERS, mean_files=3)
    simulator, url = await start_sim(dataset)
    await import_all(store, dataset)
    return dataset, simulator, url


@pytest.mark.parametrize("id_as_string", [False, True], ids=["number", "digit_string"])
async def test_a_push_gets_a_new_file_mirrored_while_polling_is_an_hour_away(
    store: MirrorStore, database_url: str, start_sim: StartSim, id_as_string: bool
) -> None:
    _dataset, simulator, url = await started(store, database_url, start_sim)
    async with running_daemon(push_settings(url, database_url), store) as daemon:
        await until(lambda: everyone_synced(store, CUSTOMERS), SETTLE_S, "the first sweep")
        simulator.pushes.register(push_address(daemon), "")
        record = await simulator.add_record_announced(2, id_as_string=id_as_string)
        sent = simulator.pushes.sent[-1]
        assert sent.status == 200
        assert sent.answer == str(sent.noise)
        await until(lambda: file_mirrored(store, record["id"]), SETTLE_S, "the pushed file")
        await until(lambda: _settled(store, sent.msg_id), SETTLE_S, "the push settled by the sync")
        metrics = daemon.sweeper.metrics
        assert metrics.push_to_mirror._sum.get() > 0  # one observation at least
        rows = await inbox_rows(store)
        assert [(r.msg_id, r.outcome) for r in rows] == [(sent.msg_id, "sync")]


async def _settled(store: MirrorStore, msg_id: str) -> bool:
    return any(r.msg_id == msg_id and r.synced_at is not None for r in await inbox_rows(store))


async def test_new_qw_customer_adds_the_customer_and_mirrors_its_files(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    dataset, simulator, url = await started(store, database_url, start_sim)
    async with running_daemon(push_settings(url, database_url), store) as daemon:
        await until(lambda: everyone_synced(store, CUSTOMERS), SETTLE_S, "the first sweep")
        simulator.pushes.register(push_address(daemon), "")
        customer = await simulator.add_customer_announced(files=1)
        sent = simulator.pushes.sent[-1]
        assert (sent.type, sent.status) == ("new_qw_customer", 200)
        (record,) = dataset.visible_records(customer.index)
        await until(lambda: file_mirrored(store, record["id"]), SETTLE_S, "the new customer's file")
        async with store.engine.connect() as conn:
            added = (
                await conn.execute(
                    select(Customer).where(Customer.external_user_id == customer.external_user_id)
                )
            ).one()
        assert added.user_id == customer.user_id


async def test_a_duplicate_msg_id_is_acknowledged_with_one_effect(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    dataset, simulator, url = await started(store, database_url, start_sim)
    async with running_daemon(push_settings(url, database_url), store) as daemon:
        await until(lambda: everyone_synced(store, CUSTOMERS), SETTLE_S, "the first sweep")
        simulator.pushes.register(push_address(daemon), "")
        customer = dataset.customer(1)
        sent = await simulator.push(
            "tag_info", {"customerId": customer.customer_id}, duplicate=True
        )
        first, second = simulator.pushes.sent[-2:]
        assert first.msg_id == second.msg_id == sent.msg_id
        assert first.status == second.status == 200
        assert first.answer == second.answer == str(sent.noise)
        await until(lambda: _settled(store, sent.msg_id), SETTLE_S, "the push settled")
        assert len(await inbox_rows(store)) == 1
        metrics = daemon.sweeper.metrics
        assert metrics.pushes.labels("tag_info", "duplicate")._value.get() == 1
        assert metrics.pushes.labels("tag_info", "sync")._value.get() == 1


def _signed(app_id: str, timestamp: str, key: str = APP_KEY) -> dict[str, str]:
    return {
        "appId": app_id,
        "timestamp": timestamp,
        "version": PUSH_VERSION,
        "sign": push_sign(app_id, PUSH_VERSION, timestamp, key),
    }


async def test_bad_pushes_get_their_status_and_change_nothing(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    dataset, _simulator, url = await started(store, database_url, start_sim)
    settings = push_settings(url, database_url, sync_push_max_body_bytes=1024)
    async with running_daemon(settings, store) as daemon:
        # The sweep's end, not only its syncs: each customer's plan is written after its sync.
        await until(lambda: daemon.sweeper.last_summary is not None, SETTLE_S, "the first sweep")
        before = await schedule_rows(store)
        now = str(int(time.time() * 1000))
        stale = str(int(time.time() * 1000) - 3_600_000)
        customer_id = dataset.customer(0).customer_id
        text = (
            '{"type":"tag_info","noise":-5,"msgId":"m1","content":{"customerId":'
            f"{customer_id}}}}}"
        )
        good_body = encrypt_body(text, APP_KEY, APP_ID.split("_")[0])
        wrong_sign = _signed(APP_ID, now) | {"sign": "0" * 64}
        cases = [
            ("bad sign", wrong_sign, good_body, 401),
            ("stale", _signed(APP_ID, stale), good_body, 401),
            ("wrong app", _signed("other-app", now), good_body, 401),
            ("missing header", {"appId": APP_ID}, good_body, 401),
            ("garbage", _signed(APP_ID, now), "%%% not base64 %%%", 400),
            ("not json", _signed(APP_ID, now), base64.b64encode(b"\x00" * 40).decode(), 400),
            ("oversized", _signed(APP_ID, now), "A" * 4096, 413),
        ]
        async with aiohttp.ClientSession() as session:
            for what, headers, body, status in cases:
                async with session.post(push_address(daemon), data=body, headers=headers) as r:
                    assert r.status == status, what
                    assert "Traceback" not in await r.text()
        assert await inbox_rows(store) == []
        assert await schedule_rows(store) == before
        metrics = daemon.sweeper.metrics
        assert metrics.pushes.labels("unverified", "bad_sign")._value.get() == 1
        assert metrics.pushes.labels("unverified", "too_large")._value.get() == 1
        # The tally reaches the database on the processor's next round.
        await until(lambda: _rejections_counted(store), SETTLE_S, "the refusals counted")


async def _rejections_counted(store: MirrorStore) -> bool:
    status = await store.push.status()
    return sum(status.rejected.values()) == 7


async def test_the_simulators_switches_bad_sign_and_replay(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    dataset, simulator, url = await started(store, database_url, start_sim)
    async with running_daemon(push_settings(url, database_url), store) as daemon:
        await until(lambda: everyone_synced(store, CUSTOMERS), SETTLE_S, "the first sweep")
        simulator.pushes.register(push_address(daemon), "")
        content = {"customerId": dataset.customer(3).customer_id}
        refused = await simulator.push("tag_info", content, bad_sign=True)
        assert refused.status == 401
        replayed = await simulator.push("tag_info", content, bad_sign=False, replay=True)
        assert replayed.status == 200
        await until(lambda: _settled(store, replayed.msg_id), SETTLE_S, "the push settled")
        assert [r.msg_id for r in await inbox_rows(store)] == [replayed.msg_id]
        assert daemon.sweeper.metrics.pushes.labels("tag_info", "duplicate")._value.get() == 1


async def test_deleted_customer_unknown_type_and_unknown_customer(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    dataset, simulator, url = await started(store, database_url, start_sim)
    async with running_daemon(push_settings(url, database_url), store) as daemon:
        await until(lambda: everyone_synced(store, CUSTOMERS), SETTLE_S, "the first sweep")
        simulator.pushes.register(push_address(daemon), "")
        gone = dataset.customer(0)
        sent = [
            await simulator.push("delete_qw_customer", {"externalUserId": gone.external_user_id}),
            await simulator.push("brand_new_type", {"whatever": [1, 2]}),
            await simulator.push("tag_info", {"customerId": 999_999_999_999}),
        ]
        assert [s.status for s in sent] == [200, 200, 200]

        async def all_processed() -> bool:
            return all(r.processed_at is not None for r in await inbox_rows(store))

        await until(all_processed, SETTLE_S, "the pushes processed")
        outcomes = {r.msg_id: r.outcome for r in await inbox_rows(store)}
        assert [outcomes[s.msg_id] for s in sent] == ["gone", "none", "unknown_customer"]
        async with store.engine.connect() as conn:
            gone_at = await conn.scalar(
                select(Customer.gone_at).where(Customer.external_user_id == gone.external_user_id)
            )
        assert gone_at is not None
        metrics = daemon.sweeper.metrics
        assert metrics.pushes.labels("other", "none")._value.get() == 1
        status = await store.push.status()
        assert status.by_type["brand_new_type"] == 1


async def test_polling_counts_the_records_no_push_announced(
    store: MirrorStore, database_url: str, start_sim: StartSim
) -> None:
    dataset, _simulator, url = await started(store, database_url, start_sim)
    polling = push_settings(
        url, database_url, sync_schedule="0.25s", sync_poll_max_interval="2s",
        sync_max_staleness="4s",
    )  # fmt: skip
    async with running_daemon(polling, store) as daemon:
        await until(lambda: daemon.sweeper.last_summary is not None, SETTLE_S, "the first sweep")
        unannounced = daemon.sweeper.metrics.unannounced
        before = unannounced._value.get()
        record = dataset.add_record(3)  # upstream, with no push
        await until(lambda: file_mirrored(store, record["id"]), SETTLE_S, "a poll to find it")
        await until(lambda: unannounced._value.get() > before, SETTLE_S, "the count")
        assert unannounced._value.get() == before + 1
